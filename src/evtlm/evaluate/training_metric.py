"""The task's own metric while training: `make_evaluate_fn` gives `evtlm.train.fit.fit` the
task's metric on a capped validation sample (model only), so early stopping and the best
checkpoint follow ROC-AUC / macro-F1 / NDCG@10. It scores the model alone, through
`evtlm.evaluate.scoring`: no baseline, no calibrator, no file written, and never the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from evtlm.decode.inference import Decoder
from evtlm.evaluate.scoring import _prompts, method_metrics, model_predictions, primary_metric, sample_rows, score_model, truth
from evtlm.recipe import Recipe


# ------------------------------------------------------------------------- training-time metric
def make_evaluate_fn(recipe: Recipe, prepared: Any) -> tuple[Callable | None, str, bool]:
    """``(evaluate_fn, metric_for_best, greater_is_better)`` for `evtlm.train.fit.fit`.

    ``evaluate_fn(model)`` scores a seeded sample of at most ``eval.fit_max_examples`` validation
    examples with the model alone and returns every task metric. Without validation examples (or
    for pretrain) it is None and fit selects on the validation loss.
    """
    from evtlm.tasks import answer_of

    task = recipe.task.name
    valid = prepared.datasets.get("valid")
    if answer_of(task) == "text" or valid is None or len(valid) == 0:
        return None, "valid_loss", False
    if recipe.task.formulation == "stream":
        return _stream_evaluate_fn(recipe, prepared)
    rows = sample_rows(len(valid), min(recipe.eval.fit_max_examples, recipe.train.max_eval_examples or 10**12),
                       recipe.train.seed)
    prompts = _prompts(valid, rows)
    y = truth(task, np.asarray(valid["label_index"])[rows], prepared.label_space)
    ks = sorted(set(recipe.eval.k))
    metric, greater = primary_metric(task, ks)
    if answer_of(task) == "binary" and len(np.unique(y)) < 2:
        metric, greater = "log_loss", False  # AUC is undefined on one class; log loss still ranks
    tokenizer, space = prepared.tokenizer, list(prepared.label_space)

    def evaluate_fn(model) -> dict[str, float]:
        decoder = Decoder(model, tokenizer, task, space, recipe.decode)
        pred = score_model(decoder, task, prompts, top_k=max(ks))
        return {k: float(v) for k, v in method_metrics(task, pred, y, ks, recipe.eval.ece_bins).items()}

    return evaluate_fn, metric, greater


def _stream_evaluate_fn(recipe: Recipe, prepared: Any) -> tuple[Callable, str, bool]:
    """Every validation target scored from its stream window (cheap: one pass per window), up to
    ``eval.fit_max_targets`` of them (a seeded sample beyond).
    next_action is judged with a decision rule fitted on the same validation data: the
    selection metric of a model whose final rule is fitted there too."""
    from evtlm.evaluate import metrics as M
    from evtlm.tasks import answer_of

    task, ks = recipe.task.name, sorted(set(recipe.eval.k))
    ix = prepared.index["valid"]
    rows = sample_rows(len(ix), recipe.eval.fit_max_targets, recipe.train.seed)  # scoring reads only their windows
    ids = ix["example_id"].to_numpy()[rows]
    y = truth(task, ix["label_index"].to_numpy()[rows], prepared.label_space)
    metric, greater = primary_metric(task, ks)
    if answer_of(task) == "binary" and len(np.unique(y)) < 2:
        metric, greater = "log_loss", False  # AUC is undefined on one class; log loss still ranks

    def evaluate_fn(model) -> dict[str, float]:
        pred = model_predictions(model, recipe, prepared.datasets["valid"], ids, max(ks))
        offsets = M.fit_class_offsets(y, pred) if answer_of(task) == "classes" else None
        return {k: float(v) for k, v in method_metrics(task, pred, y, ks, recipe.eval.ece_bins, offsets).items()}

    return evaluate_fn, metric, greater
