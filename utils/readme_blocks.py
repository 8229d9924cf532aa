"""Generated blocks in Markdown files: text between ``<!-- numbers:NAME -->`` and ``<!-- /numbers:NAME -->``.

A README that shows measured numbers keeps them in such blocks, and ``python -m experiments.readme_numbers``
rewrites each block from outputs; everything outside the blocks is left as it is. The markers are HTML
comments, invisible on a rendered page.
"""
import re

from utils.errors import UserError

_BLOCK = re.compile(r"(<!-- numbers:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /numbers:(?P=name) -->)", re.S)


def block_names(text) -> list:
    """Names of the generated blocks of ``text``, in order."""
    return [match.group("name") for match in _BLOCK.finditer(text)]


def replace_blocks(text, blocks: dict, source="README") -> str:
    """``text`` with the body of each block named in ``blocks`` replaced by its value (a block not named
    keeps its body). A name with no block in ``text`` is an error naming ``source``: a generated number
    with nowhere to go means the file and the generator disagree."""
    missing = sorted(set(blocks) - set(block_names(text)))
    if missing:
        raise UserError(f"{source}: no block <!-- numbers:{missing[0]} --> ... <!-- /numbers:{missing[0]} --> "
                        f"for the generated '{missing[0]}'")

    def body(match):
        name = match.group("name")
        if name not in blocks:
            return match.group(0)
        return match.group(1) + blocks[name].rstrip("\n") + "\n" + match.group(4)

    return _BLOCK.sub(body, text)
