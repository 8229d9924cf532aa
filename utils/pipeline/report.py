"""The audit report: ``report.html`` (self-contained), ``report.md`` and ``metrics.json``.

Every step's result has the same shape — ``text`` (list of sentences), ``tables`` (name -> rows),
``figures`` (name -> PNG path) and ``metrics`` (JSON) — so the report is assembled generically, in
step order. The HTML embeds every image as a data URI and links nothing external: it opens
offline and can be mailed as one file.
"""
import base64
import html
import platform
import shutil
from importlib import metadata
from pathlib import Path

from utils.io import dumps_json, write_json, write_text
from utils.table import MISSING, markdown_table

PACKAGES = ("torch", "torchvision", "zennit", "zennit-crp", "numpy", "scikit-learn", "h5py", "pydantic")

_STYLE = """
body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{border-bottom:3px solid #2a6f97}h2{color:#2a6f97;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#eef4f8}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9em}
pre{background:#f6f8fa;padding:1em;overflow-x:auto;font-size:.8em}.headline{font-size:1.1em;background:#f0f7ee;padding:.8em;border-left:4px solid #4a934a}
"""


def software_versions():
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _fmt(value):
    if value is None or (isinstance(value, float) and value != value):
        return MISSING
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _html_table(rows):
    if not rows:
        return ""
    headers = list(rows[0])
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(row.get(h, ''))}</td>" for h in headers) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _data_uri(path):
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def write_report(out_dir, title, sections, headline_rows, configs, metrics):
    """Write the three report files into ``out_dir``; returns the path of ``report.html``.

    ``sections``: list of (title, result) in step order; ``configs``: name -> resolved config dict.
    """
    out_dir = Path(out_dir)
    # report.md's own copies of the figures, made afresh (steps keep their originals elsewhere)
    figures_dir = out_dir / "report_figures"
    shutil.rmtree(figures_dir, ignore_errors=True)
    figures_dir.mkdir(parents=True)
    versions = software_versions()
    html_parts = [f"<h1>{html.escape(title)}</h1>", '<div class="headline">', _html_table(headline_rows), "</div>"]
    md_parts = [f"# {title}", "", markdown_table(headline_rows) if headline_rows else "", ""]
    for section_title, result in sections:
        html_parts.append(f"<h2>{html.escape(section_title)}</h2>")
        md_parts += [f"## {section_title}", ""]
        for sentence in result.get("text", []):
            html_parts.append(f"<p>{html.escape(sentence)}</p>")
            md_parts += [sentence, ""]
        for table_title, rows in result.get("tables", {}).items():
            if rows:
                html_parts += [f"<h3>{html.escape(table_title)}</h3>", _html_table(rows)]
                md_parts += [f"### {table_title}", "", markdown_table(rows), ""]
        for caption, path in result.get("figures", {}).items():
            if not Path(path).is_file():
                continue
            html_parts.append(f'<figure><img src="{_data_uri(path)}" alt="{html.escape(caption)}">'
                              f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            copy = figures_dir / f"{len(list(figures_dir.iterdir())):02d}_{Path(path).name}"
            shutil.copyfile(path, copy)
            md_parts += [f"![{caption}]({figures_dir.name}/{copy.name})", ""]
    html_parts.append("<h2>Configs used</h2>")
    md_parts += ["## Configs used", ""]
    for name, config in configs.items():
        text = dumps_json(config)
        html_parts += [f"<h3>{html.escape(name)}</h3>", f"<pre>{html.escape(text)}</pre>"]
        md_parts += [f"### {name}", "", "```json", text, "```", ""]
    html_parts += ["<h2>Software</h2>", _html_table([versions])]
    md_parts += ["## Software", "", markdown_table([versions]), ""]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(html_parts)}</body></html>")
    write_text(out_dir / "report.html", page)
    write_text(out_dir / "report.md", "\n".join(md_parts))
    write_json(out_dir / "metrics.json", {**metrics, "configs": configs, "versions": versions})
    return out_dir / "report.html"
