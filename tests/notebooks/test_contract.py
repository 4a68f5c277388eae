"""Every stage notebook follows the same contract (DESIGN.md, 'Notebook anatomy')."""

import re
from pathlib import Path

import nbformat
import pytest

from selfmoa.paths import NOTEBOOKS

NOTEBOOK_FILES = sorted(NOTEBOOKS.glob("[0-9][0-9]*_*.ipynb"))
REQUIRED = {"config_path", "run_id", "iteration", "force", "overrides"}


def test_there_are_notebooks() -> None:
    assert [p.stem for p in NOTEBOOK_FILES][:1] == ["00_setup"]


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.name)
def test_notebook_contract(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "selfmoa"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    names = set()
    for line in params[0].source.splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"(\w+): (\w+) = (.+?)  # (.+)", line)
        assert m, f"parameter line needs a type annotation, a literal and a comment: {line!r}"
        names.add(m.group(1))
    assert REQUIRED <= names
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, "commit notebooks without outputs"
            assert "!pip" not in cell.source and "sys.path" not in cell.source
