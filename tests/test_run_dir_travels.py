"""A run directory travels (issue 12 findings 5 and 14): `evtlm evaluate --run DIR` works from any
working directory, stops in one line when its data file moved or changed, takes recipe
overrides, and masks history items for the baselines as it does for the model.

The file-backed run is a tiny finetune (tests/test_evaluate.py's settings) of the purchase
recipe on a shop written by `evtlm.ingest.simulate.write_shop`, trained from a working directory that
names the file by a relative path.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import numpy as np
from test_evaluate import REPO, TINY, _isolated, session_root, tiny_run  # noqa: F401  (_isolated: autouse)

from evtlm.cli.main import main


@functools.lru_cache(maxsize=None)
def file_run() -> Path:
    """A purchase run trained on ``data/shop.csv``, relative to the directory finetune ran in."""
    from evtlm.recipe import SyntheticConfig
    from evtlm.ingest.simulate import simulate_shop, write_shop

    root = session_root() / "file_run"
    write_shop(simulate_shop(SyntheticConfig(users=80, items=40, days=28)), root / "data" / "shop.csv")
    here = Path.cwd()
    os.chdir(root)
    try:
        code = main(["finetune", str(REPO / "recipes/purchase.yaml"), *TINY, "data.preset=evtlm_shop",
                     "data.path=data/shop.csv", "output.dir=runs", "output.name=shop", "--no-progress"])
    finally:
        os.chdir(here)
    assert code == 0
    return root / "runs" / "shop"


def evaluate(run: Path, *extra: str) -> int:
    return main(["evaluate", "--run", str(run), "--max-examples", "20", "--baselines", "prior", "--no-progress", *extra])


# ------------------------------------------------------------------------------------- finding 5
def test_the_run_names_its_data_by_absolute_path_and_fingerprint():
    run = file_run()
    from evtlm.recipe import load_recipe

    data = load_recipe(run / "recipe.resolved.yaml").data
    shop = run.parents[1] / "data" / "shop.csv"
    assert data.path == str(shop.resolve())
    recorded = json.loads((run / "run.json").read_text())["data_files"]
    assert recorded["data.path"]["path"] == str(shop.resolve()) and recorded["data.path"]["size"] == shop.stat().st_size


def test_evaluate_runs_from_another_working_directory(tmp_path, monkeypatch, capsys):
    run = file_run()
    monkeypatch.chdir(tmp_path)  # nothing of the run's relative layout is here
    assert evaluate(run) == 0
    assert "N = 20 examples for every method" in capsys.readouterr().out


def test_a_moved_or_changed_data_file_stops_evaluate_in_one_line(tmp_path, monkeypatch, capsys):
    run = file_run()
    data = run.parents[1] / "data"
    moved = run.parents[1] / "data_moved"
    monkeypatch.chdir(tmp_path)
    data.rename(moved)
    try:
        assert evaluate(run) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: the data file '{data / 'shop.csv'}' the run was trained on is missing")
        assert "data.path=NEW_PATH" in err and err.count("\n") == 1 and "Traceback" not in err
        # the same file at its new place, named by an override: accepted
        assert evaluate(run, f"data.path={moved / 'shop.csv'}") == 0
        assert "N = 20" in capsys.readouterr().out
        # another file at the old place: refused, saying what differs
        data.mkdir()
        lines = (moved / "shop.csv").read_text().splitlines(keepends=True)
        (data / "shop.csv").write_text("".join(lines[:-10]))
        assert evaluate(run) == 2
        err = capsys.readouterr().err
        assert "is not the one the run was trained on: size" in err and err.count("\n") == 1
    finally:
        shutil.rmtree(data, ignore_errors=True)
        moved.rename(data)


def test_missing_file_errors_say_what_relative_paths_are_resolved_against(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["validate-data", "nothere.csv"]) == 2
    err = capsys.readouterr().err
    assert f"relative paths are resolved against the current directory, '{tmp_path}'" in err


# ------------------------------------------------------------------------------------ finding 14
def test_evaluate_takes_overrides_and_the_report_states_them(tmp_path, capsys):
    run = shutil.copytree(tiny_run("next_item"), tmp_path / "run")  # the shared run's report stays as it is
    assert main(["evaluate", "--run", str(run), "--max-examples", "30", "--no-progress",
                 "decode.exclude_history_items=true", "eval.k=[1,5]"]) == 0
    out = capsys.readouterr().out
    result = json.loads((run / "metrics.json").read_text())
    assert result["overrides"] == ["decode.exclude_history_items=true", "eval.k=[1,5]"] and result["k"] == [1, 5]
    stated = "Evaluated with overrides of the run's recipe: decode.exclude_history_items=true eval.k=[1,5]."
    assert stated in out and stated in (run / "report.md").read_text() and stated in (run / "README.md").read_text()
    assert "excluded from every method's ranking, the model's and each baseline's alike" in (run / "report.md").read_text()
    # settings that would change what the model was trained on are refused, in one line
    assert main(["evaluate", "--run", str(run), "task.name=next_action"]) == 2
    err = capsys.readouterr().err
    assert "override 'task.name=next_action' would change what the run was trained on" in err and err.count("\n") == 1


def test_history_exclusion_masks_every_method_alike(monkeypatch):
    """decode.exclude_history_items used to apply to the model only: the baselines ranked the
    history items the model was forbidden, and the report compared the two without a word."""
    import evtlm.evaluate.harness as E
    from evtlm.decode.inference import load_run_recipe

    run = tiny_run("next_item")
    masks, ranked = [], []
    exclusions = E.history_exclusions
    monkeypatch.setattr(E, "history_exclusions", lambda *a: masks.append(exclusions(*a)) or masks[-1])
    metrics = E.method_metrics
    monkeypatch.setattr(E, "method_metrics", lambda task, pred, *a, **k: ranked.append(pred) or metrics(task, pred, *a, **k))
    overrides = ["decode.exclude_history_items=true"]
    result = E.evaluate_run(run, recipe=load_run_recipe(run, overrides), overrides=overrides, progress=False,
                            max_examples=40, write=False)
    assert result["exclude_history_items"] and len(masks) == 1 and any(masks[0])
    assert len(ranked) == len(result["methods"]) == 6  # the model and five baselines
    for pred in ranked:
        assert pred.shape == (40, 20)
        assert not any(set(row.tolist()) & set(banned) for row, banned in zip(pred, masks[0]))
        short = [row for row, banned in zip(pred, masks[0]) if len(banned) <= 5]
        assert short and all((row >= 0).all() for row in short)  # ranked deeper: 20 items remain of the 40
    assert np.isfinite([m["hr@20"] for m in result["methods"].values()]).all()
