"""Executed notebooks rendered to HTML without generated text; result files written by suffix; one normaliser."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest

from selfmoa import publish, render
from selfmoa.text import normalise_text, text_key


def _run(tmp_path: Path) -> Path:
    hidden = nbformat.v4.new_code_cell("show_examples(samples)", metadata={"tags": ["hide-output"]})
    hidden.outputs = [nbformat.v4.new_output("stream", name="stdout", text="SECRET-ATTACK: how to ...\n")]
    long = nbformat.v4.new_code_cell("print(table)")
    long.outputs = [nbformat.v4.new_output("stream", name="stdout", text="\n".join("x" * 500 for _ in range(50)))]
    shown = nbformat.v4.new_code_cell("metrics")
    shown.outputs = [
        nbformat.v4.new_output("execute_result", data={"text/plain": "{'safety': 0.42}"}, execution_count=1)
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 02 · Red-team"), hidden, long, shown])
    run = tmp_path / "runs" / "tiny"
    (run / "executed").mkdir(parents=True)
    nbformat.write(nb, run / "executed" / "02_redteam_iter0.ipynb")
    return run


def test_render_run_leaves_out_generated_text_and_cuts_long_outputs(tmp_path: Path) -> None:
    pages = render.render_run(_run(tmp_path), tmp_path / "docs")
    assert [p.name for p in pages] == ["index.html", "02_redteam_iter0.html"]
    page = pages[1].read_text()
    assert "SECRET-ATTACK" not in page and "left out of the rendering" in page
    assert "show_examples" in page  # the code stays readable
    assert "x" * render.MAX_LINE_CHARS not in page and "x" * (render.MAX_LINE_CHARS - 1) in page
    assert "30 more lines" in page and "0.42" in page
    assert "02_redteam_iter0.html" in pages[0].read_text()
    with pytest.raises(FileNotFoundError, match="selfmoa run"):
        render.render_run(tmp_path / "empty", tmp_path / "docs")


def test_cut_text() -> None:
    assert render.cut_text("short\n") == "short\n"
    assert render.cut_text("abcdef", max_chars=4) == "abc…"
    assert render.cut_text("a\nb\nc", max_lines=2) == "a\nb\n… (1 more lines)"


def test_publish_writes_by_suffix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish, "results_dir", lambda profile: tmp_path / profile)
    paths = publish.publish("p", {"a.json": {"x": 1}, "b.csv": pd.DataFrame({"y": [2]}), "c.md": "| t |"})
    assert [p.name for p in paths] == ["a.json", "b.csv", "c.md"]
    assert (tmp_path / "p" / "c.md").read_text() == "| t |\n" and "y" in (tmp_path / "p" / "b.csv").read_text()
    with pytest.raises(TypeError, match="str"):
        publish.write_file(tmp_path / "d.md", {"not": "text"})
    figs = tmp_path / "figs"
    figs.mkdir()
    (figs / "f.png").write_bytes(b"png")
    assert [p.name for p in publish.publish_figures(figs, tmp_path / "out")] == ["f.png"]


def test_one_normaliser() -> None:
    assert normalise_text("  I\u2019m   SORRY\n") == "i'm sorry"
    assert text_key("How do I pick a lock?") == text_key("how do i pick a LOCK")
