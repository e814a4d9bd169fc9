"""Adding a task is one module plus one registry line: a toy task defined in tests/toy_task.py
runs through prepare, finetune, evaluate and predict without a change in src/ (issue 15)."""

from __future__ import annotations

import json

import pytest
from test_evaluate import TINY, _isolated, session_root  # noqa: F401  (_isolated: caches in tmp, one thread; autouse)
from toy_task import NextIsPurchase

from evtlm.tasks import TASKS


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(TASKS, NextIsPurchase.name, NextIsPurchase)  # the one registry line
    yield NextIsPurchase.name


def test_a_task_from_the_tests_folder_runs_through_the_whole_pipeline(toy_registered, tmp_path):
    from evtlm.cli.main import main
    from evtlm.data.prepare import prepare
    from evtlm.evaluate.harness import evaluate_run
    from evtlm.predict.batch import predict_file
    from evtlm.recipe import load_recipe

    overrides = [*TINY, f"task.name={toy_registered}", "model.when_unavailable=scratch",
                 f"output.dir={tmp_path}", "output.name=toy"]
    recipe = load_recipe(None, overrides)
    assert recipe.task.name == toy_registered

    # prepare: the task's own examples, label space and question
    prepared = prepare(recipe, progress=False)
    assert prepared.label_space == [" no", " yes"]
    assert prepared.report["task"]["primary_metric"] == "roc_auc"
    assert set(prepared.index["train"]["label"].unique()) <= {0, 1}

    # finetune (which evaluates on test at the end): the model beside the baselines of its answer's shape
    from evtlm.cli.finetune import finetune

    run = finetune(recipe, progress=False)
    assert run == tmp_path / "toy"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == toy_registered and metrics["primary_metric"] == "roc_auc"
    assert set(metrics["methods"]) == {"model", "prior"}
    for method in metrics["methods"].values():
        assert {"roc_auc", "log_loss", "brier", "ece", "accuracy"} <= set(method)
    assert "| prior |" in (run / "report.md").read_text()

    # evaluate again, on validation
    again = evaluate_run(run, split="valid", progress=False, write=False)
    assert again["task"] == toy_registered and again["n"] > 0

    # predict: one record per user, P(yes) under the binary tasks' default key
    history = tmp_path / "shop.csv"
    assert main(["simulate", "--users", "12", "--items", "40", "--days", "28", "--seed", "3", "--out", str(history)]) == 0
    summary = predict_file(run, history, tmp_path / "p.jsonl", progress=False)
    records = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert summary["users"] == len(records) == 12
    for r in records:
        if "error" not in r:
            assert 0.0 <= r["p_yes"] <= 1.0 and r["answer"] in ("yes", "no")

