"""The README is tested: the shell commands of its step-by-step and bring-your-own sections run as
written, in order, in a temporary copy of the repository, and every file those sections name exists
afterwards. A docs change that breaks a command fails here.

How the README's commands are read (the convention is stated in the README's "Development" section):

* `` ```bash `` blocks of the section, one command per line; ``\\`` continues a line, ``<<'END'``
  heredocs are kept whole, ``VAR=value`` lines carry over to the later commands;
* ``<NAME>`` (``<NAME> ...``: one or more) is a placeholder the test fills in (:data:`PLACEHOLDERS`);
  ``[...]`` is an optional argument and is left out;
* a comment ``# in <file>, under <key>:   <name>: <value>`` is an edit the user makes: the test makes it;
* the user's own files (``~/photos/*.jpg``, ``ruler_mask_of_a.png``) are drawn by the test.

The run is reduced (:data:`REDUCED_TRAINING`, :data:`REDUCED_AUDIT`: 32-px images, fewer samples and
epochs, shorter DORA/CRP settings) by editing the copied configs before the first command; the
commands themselves are not changed.

Each command runs in a process of its own; a plain ``python -m`` one is forked from a server that has
imported torch, scipy, sklearn, matplotlib and pandas once (:mod:`tests.command_server`), which saves
the interpreter start-up (most of each command's time), the rest runs with ``bash -c``.
"""
import csv
import glob
import json
import os
import re
import shutil
import sys
import time

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.command_server import PRELOAD, CommandRunner, python_module_command
from tests.conftest import ROOT

README = ROOT / "README.md"
COPIED = ("config_files", "data", "datasets", "experiments", "model_training", "models", "static", "utils",
          "README.md", "pyproject.toml", "requirements.txt")
DATA = {"img_size": 32, "dataset_options": {"n_train": 96, "n_val": 16, "n_test": 16}}
REDUCED_TRAINING = {"config_files/training/synth_derm/tiny_vgg_adam_lr0.003.yaml":
                    {**DATA, "batch_size": 16, "num_epochs": 2, "milestones": [1]}}
REDUCED_AUDIT = {"config_files/revealing/synth_derm/tiny_vgg_default.yaml":
                 {**DATA, "batch_size": 16, "heatmap_size": 16, "lof_n_neighbors": 5, "n_outliers": 4,
                  "dora_sams_steps": 5, "dora_n_refs": 2, "dora_sams_resolution": 16, "crp_n_refs": 2}}
# Files a section names that its own commands do not write (said in the text): made by `make demo`, or the
# user's own files that the worked example copies in.
NOT_WRITTEN_BY_THE_SECTION = {"outputs/training/synth_derm/tiny_vgg/synth_derm/checkpoints/best.pt"}
EDIT = re.compile(r"#\s*in (?P<file>\S+), under (?P<key>\w+):\s+(?P<name>\w+):\s+(?P<value>\S+)")
FILE_NAME = re.compile(r"`([\w./<>-]+\.(?:pt|json|csv|png|yaml|md|py|h5))`")


def section(title):
    """The text under the heading ``title`` up to the next heading of the same or a higher level."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"#+ " + re.escape(title), line))
    level = lines[start].index(" ")
    end = next((i for i in range(start + 1, len(lines))
                if re.match(r"#{1,%d} " % level, lines[i]) and not _in_code(lines, i)), len(lines))
    return "\n".join(lines[start + 1:end])


def _in_code(lines, index):
    return sum(line.startswith("```") for line in lines[:index]) % 2 == 1


def commands(text):
    """The commands of the section's bash blocks: ("run", command) or ("edit", match) items in order."""
    items = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines = block.splitlines()
        while lines:
            line = lines.pop(0)
            if not line.strip():
                continue
            if line.lstrip().startswith("#"):
                edit = EDIT.search(line)
                if edit:
                    items.append(("edit", edit))
                continue
            while line.endswith("\\"):
                line = line[:-1] + lines.pop(0).strip()
            heredoc = re.search(r"<<'(\w+)'", line)
            if heredoc:
                body = []
                while lines[0] != heredoc.group(1):
                    body.append(lines.pop(0))
                line = "\n".join([line, *body, lines.pop(0)])
            else:
                line = re.sub(r"\s+#.*$", "", line)  # a trailing comment
            items.append(("run", re.sub(r"\s\[--[^\]]*\]", "", line)))  # optional arguments left out
    return items


def _to_review_ids(cwd):
    """Sample ids of the list the last ``refine`` wrote, as a reviewer reads them from to_review.csv."""
    (path,) = glob.glob(str(cwd / "outputs" / "**" / "to_review.csv"), recursive=True)
    with open(path) as handle:
        return [row["sample_id"] for row in csv.DictReader(handle)]


# ``--accept <ID> ...`` takes the first two listed samples, ``--reject <ID> ...`` the next two.
PLACEHOLDERS = {"--accept": lambda cwd: _to_review_ids(cwd)[:2], "--reject": lambda cwd: _to_review_ids(cwd)[2:4]}


def fill_placeholders(command, cwd):
    def fill(match):
        ids = PLACEHOLDERS[match.group(1)](cwd)
        assert ids, f"no value for {match.group(0)!r} in {command!r}"
        return f"{match.group(1)} {' '.join(ids)}"

    command = re.sub(r"(%s) <\w+>(?: \.\.\.)?" % "|".join(PLACEHOLDERS), fill, command)
    assert not re.search(r"<\w+>", command), f"unfilled placeholder in {command!r}"
    return command


def run_section(title, cwd, env, preload=PRELOAD):
    """Run every command of the section in order (``preload``: what the command server imports once,
    see tests/command_server.py); returns the section's text."""
    text = section(title)
    assignments = []
    items = commands(text)
    assert items, f"no commands found in the README's section {title!r}"
    with CommandRunner(cwd, env, preload) as runner:  # each command its own process; python -m ones forked
        for kind, item in items:
            if kind == "edit":
                path = cwd / item["file"]
                current = yaml.safe_load(path.read_text()) if path.is_file() else {}
                current.setdefault(item["key"], {})[item["name"]] = item["value"]
                path.write_text(yaml.safe_dump(current))
                continue
            if re.fullmatch(r"\w+=\S+", item):
                assignments.append(item)
                continue
            command = fill_placeholders(item, cwd)
            start = time.time()
            done = runner.run(assignments, command)
            how = "forked" if done.forked else "bash"
            print(f"{time.time() - start:5.1f} s  ({how}) {command}")  # shown by pytest -s, or with a failure
            assert done.returncode == 0, \
                f"README command failed (exit {done.returncode}, {how}): {command}\n{done.stderr[-3000:]}"
    return text


def named_files(text):
    """Files the text names (backticked paths with a file suffix), as glob patterns."""
    names = set(FILE_NAME.findall(text)) - NOT_WRITTEN_BY_THE_SECTION
    patterns = []
    for name in sorted(names):
        pattern = re.sub(r"<\w+>", "*", name).replace("...", "**")
        patterns.append(pattern if "/" in pattern else f"**/{pattern}")
    return patterns


def assert_named_files_exist(text, cwd):
    missing = [p for p in named_files(text) if not glob.glob(str(cwd / p), recursive=True)]
    assert not missing, f"files the README names but the commands did not write: {missing}"


@pytest.fixture
def repo_copy(tmp_path):
    """A copy of the repository (no outputs, no git) and an environment whose ``python`` is this one."""
    copy = tmp_path / "repo"
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "local_config.yaml"))
        else:
            copy.mkdir(exist_ok=True)
            shutil.copy2(source, copy / name)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("SHORTCUTLAB_LOCAL_CONFIG", None)
    return copy, home, env


def _reduce(copy, edits):
    for relative, values in edits.items():
        path = copy / relative
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **values}, sort_keys=False))


def test_commands_parse_as_written():
    """The parser sees what a reader sees: the heredoc whole, placeholders and optional arguments marked."""
    audit = commands(section("Audit steps one by one"))
    runs = [c for kind, c in audit if kind == "run"]
    assert runs[0].startswith("python -m model_training.start_training")
    assert "C=config_files/revealing/synth_derm/tiny_vgg_default.yaml" in runs
    assert not any("[" in c for c in runs)
    assert sum("<ID>" in c for c in runs) == 1
    assignments = [c for c in runs if re.fullmatch(r"\w+=\S+", c)]  # each python -m is forked, not run by bash
    assert all(python_module_command(assignments, re.sub(r" <ID>( \.\.\.)?", " x", c))
               for c in runs if c.startswith("python -m"))
    own = commands(section("Bring your own images"))
    heredoc = next(c for kind, c in own if kind == "run" and c.startswith("cat >"))
    assert heredoc.splitlines()[-1] == "CSV" and "a.jpg,benign,train" in heredoc
    assert [e["file"] for kind, e in own if kind == "edit"] == ["config_files/local_config.yaml"]
    named = named_files(section("Audit steps one by one"))
    assert {"outputs/reveal/**/spray_class*.json", "**/to_review.png", "**/annotation_state.json",
            "outputs/training/synth_derm/tiny_vgg/tiny_vgg_adam_lr0.003/checkpoints/best.pt"} <= set(named)
    assert not any("synth_derm/checkpoints" in p for p in named)  # the demo's checkpoint: written by make demo
    with pytest.raises(AssertionError, match="unfilled placeholder"):
        fill_placeholders("refine --artifact <NAME>", ROOT)


@pytest.mark.slow  # fifteen processes, under a minute (forked: tests/command_server.py)
def test_step_by_step_audit_runs_as_written(repo_copy):
    copy, _, env = repo_copy
    _reduce(copy, {**REDUCED_TRAINING, **REDUCED_AUDIT})
    text = run_section("Audit steps one by one", copy, env)
    assert_named_files_exist(text, copy)
    state = json.loads(next(copy.glob("outputs/**/annotation_state.json")).read_text())
    assert state["history"], "the --accept/--reject command recorded no decision"


def test_bring_your_own_example_runs_as_written(repo_copy):
    copy, home, env = repo_copy
    rng = np.random.default_rng(0)
    (home / "photos").mkdir()
    for name in "abcdef":  # the user's photos: six small JPEGs
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(home / "photos" / f"{name}.jpg")
    mask = np.zeros((40, 48), dtype=np.uint8)
    mask[5:12, 4:30] = 255
    Image.fromarray(mask).save(copy / "ruler_mask_of_a.png")
    # its one heavy command trains: preload only what training imports (no sklearn, scipy, matplotlib)
    text = run_section("Bring your own images", copy, env, preload=["numpy", "torch", "pandas", "PIL.Image", "yaml",
                                                                    "pydantic", "tqdm"])
    assert yaml.safe_load((copy / "config_files" / "local_config.yaml").read_text()) == {
        "data_paths": {"image_folder": "my_images"}}
    assert_named_files_exist(text, copy)
    assert list(copy.glob("outputs/training/image_folder/tiny_vgg/*/checkpoints/best.pt"))
