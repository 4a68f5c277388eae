"""Read a run without running it: its executed notebooks rendered to HTML (nbconvert), with generated text cut.

Stage 08 calls `render_run` when `publish: true`, so `make study` regenerates
`docs/notebooks/<profile>/` (one HTML page per executed notebook plus an `index.html`). Generated prompts
and answers must not reach git, so before rendering:

- a code cell tagged `hide-output` (every cell that prints red-team prompts or model answers) keeps its
  code but its outputs are replaced by one line saying they were left out;
- every other text output is cut to `MAX_LINES` lines of at most `MAX_LINE_CHARS` characters;
- an HTML output (a table) longer than `MAX_HTML_CHARS` is dropped in favour of its cut plain-text form.
Images (figures) are kept.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from selfmoa.paths import ROOT

DOCS = ROOT / "docs" / "notebooks"
HIDE_TAG = "hide-output"
MAX_LINE_CHARS = 200
MAX_LINES = 20
MAX_HTML_CHARS = 20_000
STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}"
    "pre{background:#f6f6f6;padding:.5em;overflow-x:auto}"
    ".jp-InputPrompt,.jp-OutputPrompt{display:none}img{max-width:100%}"
)
LEFT_OUT = "[output left out of the rendering: it shows generated prompts or answers]"


def cut_text(text: str, max_lines: int = MAX_LINES, max_chars: int = MAX_LINE_CHARS) -> str:
    """At most `max_lines` lines of at most `max_chars` characters each; cuts are marked with '…'."""
    lines = text.splitlines()
    out = [line if len(line) <= max_chars else line[: max_chars - 1] + "…" for line in lines[:max_lines]]
    if len(lines) > max_lines:
        out.append(f"… ({len(lines) - max_lines} more lines)")
    return "\n".join(out) + ("\n" if text.endswith("\n") and out else "")


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _redact_output(output: Any) -> None:
    kind = output.get("output_type")
    if kind == "stream":
        output["text"] = cut_text(_text(output["text"]))
    elif kind in ("execute_result", "display_data"):
        data = output.get("data", {})
        if "text/plain" in data:
            data["text/plain"] = cut_text(_text(data["text/plain"]))
        if "text/html" in data and len(_text(data["text/html"])) > MAX_HTML_CHARS:
            del data["text/html"]
    elif kind == "error":
        output["traceback"] = cut_text("\n".join(output.get("traceback", []))).splitlines()
        output["evalue"] = cut_text(_text(output.get("evalue", "")), max_lines=3)


def redact(nb: Any) -> Any:
    """The notebook with outputs of `hide-output` cells left out and every other text output cut (in place)."""
    import nbformat

    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if HIDE_TAG in cell.get("metadata", {}).get("tags", []):
            cell.outputs = (
                [nbformat.v4.new_output("stream", name="stdout", text=LEFT_OUT + "\n")] if cell.outputs else []
            )
            continue
        for output in cell.get("outputs", []):
            _redact_output(output)
    return nb


def render_notebook(path: Path, out_dir: Path) -> Path:
    """Render one executed notebook to `<out_dir>/<name>.html` after `redact`."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = redact(nbformat.read(path, as_version=4))
    body, _ = HTMLExporter(template_name="basic").from_notebook_node(nb)  # no inlined CSS: small pages
    out = Path(out_dir) / f"{Path(path).stem}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(_page(Path(path).stem, body), encoding="utf-8")
    return out


def _page(title: str, body: str) -> str:
    """A standalone HTML page around `body`, with a small stylesheet."""
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title>\n<style>{STYLE}</style>"
    return f"<!DOCTYPE html>\n<html><head>{head}</head>\n<body>\n{body}\n</body></html>\n"


def render_run(run: Path, out_dir: Path) -> list[Path]:
    """Render every executed notebook of a run (`<run>/executed/*.ipynb`) into `out_dir`, with an index page.

    Raises:
        FileNotFoundError: when the run has no executed notebooks (run it with `selfmoa run` first).
    """
    sources = sorted((Path(run) / "executed").glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"{run}/executed/ holds no executed notebooks; run the study with `selfmoa run` first")
    pages = [render_notebook(p, out_dir) for p in sources]
    links = "\n".join(f'<li><a href="{html.escape(p.name)}">{html.escape(p.stem)}</a></li>' for p in pages)
    title = f"Executed notebooks of run {Path(run).name}"
    index = Path(out_dir) / "index.html"
    index.write_text(_page(title, f"<h1>{html.escape(title)}</h1>\n<ul>\n{links}\n</ul>"), encoding="utf-8")
    return [index, *pages]
