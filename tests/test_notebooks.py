"""The notebooks run, top to bottom, on every `make test`, so they cannot rot.

Each notebook is executed with nbclient in a fresh kernel (the venv's ipykernel), from a temporary
working directory (its runs/ and files go there) with ``EVTLM_CACHE`` pointing into it, and with
small settings injected right after its ``parameters`` cell (the papermill convention, without
papermill). The committed files must carry no outputs, so diffs stay readable.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
TAOBAO = REPO.parent / "shared" / "data" / "taobao" / "UserBehavior_head84k.csv"

# what the test injects: the smallest settings that still exercise every cell
SMALL = {
    "01_quickstart.ipynb": {"SMALL": True, "USERS": 80, "MAX_STEPS": 4},
    "02_real_logs.ipynb": {"SMALL": True, "MAX_USERS": 70, "MAX_STEPS": 4},
}


def _load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _parameters_index(nb: nbformat.NotebookNode) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    return tagged[0]


def _outputs_text(nb: nbformat.NotebookNode) -> str:
    """Everything the executed notebook printed or displayed as text."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for c in nb.cells for out in c.get("outputs", []))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_committed_notebooks_are_stripped_and_parameterised(name):
    nb = _load(name)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name} cell {i} has stored outputs: strip them before committing"
            assert cell.execution_count is None, f"{name} cell {i} has an execution count"
    params = nb.cells[_parameters_index(nb)].source
    for key in SMALL[name]:
        assert re.search(rf"^{key} = ", params, re.M), f"{name}: parameter {key} not in the parameters cell"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    # only the public API: no private names, no reaching into the tests
    assert not re.search(r"from evtlm[\w.]* import [^\n]*\b_\w", code), "a notebook imports a private name"
    assert "tests" not in re.findall(r"^\s*(?:from|import) (\w+)", code, re.M)


def execute(name: str, tmp_path: Path, monkeypatch, extra: dict | None = None) -> nbformat.NotebookNode:
    """Run notebook ``name`` with its small parameters in ``tmp_path``; returns the executed notebook."""
    from nbclient import NotebookClient

    nb = _load(name)
    values = {**SMALL[name], **(extra or {}), "WORKDIR": str(tmp_path / "work")}
    injected = nbformat.v4.new_code_cell("# injected by tests/test_notebooks.py\n"
                                         + "\n".join(f"{k} = {v!r}" for k, v in values.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(_parameters_index(nb) + 1, injected)
    monkeypatch.setenv("EVTLM_CACHE", str(tmp_path / "cache"))  # the kernel inherits the environment
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny models lose time to thread contention on shared cores
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the scratch path even where the hub is reachable: no downloads in tests
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def test_quickstart_runs_end_to_end(tmp_path, monkeypatch):
    nb = execute("01_quickstart.ipynb", tmp_path, monkeypatch)
    work = tmp_path / "work"
    run = work / "runs" / "purchase"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["methods"]) >= {"model", "prior", "gbt"} and metrics["n"] > 0
    records = [json.loads(line) for line in (work / "five_users.preds.jsonl").read_text().splitlines()]
    assert len(records) == 5 and all(0 <= r["p_purchase"] <= 1 for r in records)
    text = _outputs_text(nb)
    assert "N = " in text and "p_purchase" in text and "tokens" in text
    assert _images(nb) >= 3  # learning curve, ROC, reliability inline
    assert not (tmp_path / "runs").exists() and not (REPO / "notebooks" / "notebook_runs").exists()


def test_real_logs_notebook_says_which_data_and_reads_mistakes(tmp_path, monkeypatch):
    nb = execute("02_real_logs.ipynb", tmp_path, monkeypatch)
    text = _outputs_text(nb)
    expected = "DATA: Taobao UserBehavior" if TAOBAO.is_file() else "DATA: the synthetic shop"
    assert expected in text
    assert "tokens/event" in text and "model (time=none)" in text and "model (time=relative)" in text
    assert re.search(r"\d+ mistakes on \d+ test examples", text)
    assert _images(nb) >= 2
    runs = sorted(p.name for p in (tmp_path / "work" / "runs").iterdir())
    assert len(runs) == 2 and all((tmp_path / "work" / "runs" / r / "metrics.json").is_file() for r in runs)
