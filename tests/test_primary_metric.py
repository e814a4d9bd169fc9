"""One primary metric per task (issue 15): what data_report.json states is what evaluate ranks
methods by and early stopping follows (they once said accuracy vs macro-F1, ndcg@k vs NDCG@10)."""

from __future__ import annotations

import pytest

from evtlm.data.prepare import prepare, text_recipe
from evtlm.evaluate.harness import primary_metric
from evtlm.recipe import Recipe
from evtlm.tasks import TASKS, resolve_primary

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "n_positions": 128, "vocab_size": 400, "pretrain_epochs": 0}


@pytest.mark.parametrize(("task", "ks", "want"), [
    ("purchase", [1, 5, 20], "roc_auc"), ("next_action", [1, 5, 20], "macro_f1"),
    ("next_item", [1, 5, 20], "ndcg@20"), ("next_item", [5, 10], "ndcg@10"),
])
def test_the_data_report_states_the_metric_evaluation_ranks_by(task, ks, want, tmp_path):
    recipe = text_recipe(Recipe.model_validate({
        "data": {"synthetic": {"users": 40, "items": 20, "categories": 3, "days": 30, "seed": 3}},
        "task": {"name": task, "max_tokens": 96, **({"horizon_days": 7} if task == "purchase" else {})},
        "split": {"method": "time", "valid_days": 5, "test_days": 5},
        "model": {"when_unavailable": "scratch", "scratch": TINY},
        "eval": {"k": ks},
    }))
    report = prepare(recipe, progress=False, cache_dir=tmp_path, use_cache=False).report
    assert report["task"]["primary_metric"] == primary_metric(task, ks)[0] == want


def test_every_task_resolves_its_own_primary_metric():
    for name, task in TASKS.items():
        metric, greater = resolve_primary(name, [10])
        assert metric.split("@")[0] in {m.split("@")[0] for m in task.metric_names}
        assert greater == (name != "pretrain")  # the pretraining loss is the one that falls
