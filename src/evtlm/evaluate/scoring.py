"""How each method is scored on the chosen examples: the seeded sample of a split, the model's
predictions (per-example prompts through `evtlm.decode.inference.Decoder`, stream windows through
`evtlm.train.stream_model.stream_predictions`), what they are judged against (`truth`) and every
metric of the task for one method (`method_metrics`, the same `evtlm.evaluate.metrics` functions
for the model and each baseline). Plain functions of arrays and a model: it fits no baseline,
writes no file and never trains the model; its callers (`evtlm.evaluate.harness`,
`evtlm.evaluate.training_metric`) decide which examples and methods it sees.

>>> sample_rows(10, 4, seed=0).tolist() == sample_rows(10, 4, seed=0).tolist(), len(sample_rows(10, None, 0))
(True, 10)
>>> primary_metric("next_item", [1, 5, 20])        # NDCG@10 unless 10 is not among eval.k
('ndcg@20', True)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from evtlm.decode.inference import Decoder
from evtlm.recipe import Recipe

def sample_rows(n: int, cap: int | None, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of ``cap`` of ``n`` examples (all when cap is None)."""
    if cap is None or cap >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def primary_metric(task: str, ks: Sequence[int]) -> tuple[str, bool]:
    """``(metric, greater_is_better)`` that ranks methods and drives early stopping: the task's
    own (`evtlm.tasks.resolve_primary`), as data_report.json states it."""
    from evtlm.tasks import resolve_primary

    return resolve_primary(task, ks)


def _prompts(dataset, rows: np.ndarray) -> list[list[int]]:
    part = dataset.select(rows) if len(rows) != len(dataset) else dataset
    return [ids[:n] for ids, n in zip(part["input_ids"], part["prompt_length"])]


# ------------------------------------------------------------------------------ model scoring
def score_model(decoder: Decoder, task: str, prompts: list[list[int]], top_k: int = 10,
                exclude: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """The model's predictions: P(yes) [n] (purchase), probs [n, C] (next_action), or ranked
    label-space indices [n, top_k] (next_item, -1 padded). Under several processes each scores
    its share of the prompts and all get the whole (`evtlm.sharded`): every process must call."""
    from evtlm.sharded import shard_scores
    from evtlm.tasks import answer_of

    kind = answer_of(task)

    def score(pos: np.ndarray) -> np.ndarray:
        part = [prompts[i] for i in pos]
        if kind == "binary":
            return decoder.probs(part)[:, decoder.label_space.index(" yes")]
        if kind == "classes":
            return decoder.probs(part)
        return decoder.items(part, top_k, None if exclude is None else [exclude[i] for i in pos])[0]

    return shard_scores(len(prompts), score)


def method_metrics(task: str, pred: np.ndarray, y: np.ndarray, ks: Sequence[int], n_bins: int,
                   offsets: np.ndarray | None = None) -> dict[str, float]:
    """Every metric of the task for one method. ``y``: see `truth`. ``offsets`` (next_action):
    the decision rule fitted on validation (`evtlm.evaluate.metrics.fit_class_offsets`) that accuracy and
    macro-F1 judge; log loss, Brier and ECE judge the probabilities as they are."""
    from evtlm.evaluate import metrics as M
    from evtlm.tasks import answer_of

    kind = answer_of(task)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.MetricWarning)  # NaN AUC on one class: visible in the table
        if kind == "binary":  # p_std: the spread of P(yes); near 0, a model that learned only the base rate
            return {**M.binary_metrics(y, pred, n_bins=n_bins), "p_std": float(np.std(pred)) if len(pred) else float("nan")}
        if kind == "classes":
            probs, truth = closed_with_unseen(pred, y)
            decisions = None
            if offsets is not None:
                decisions = M.apply_offsets(pred, offsets)
            return M.multiclass_metrics(truth, probs, n_bins=n_bins, decisions=decisions)
        return M.ranking_metrics(pad_ranking(pred, max(ks)), y, ks)


def truth(task: str, label_index: np.ndarray, label_space: Sequence[str]) -> np.ndarray:
    """What predictions are judged against: 1/0 = buys (purchase), else the label index (-1:
    outside the label space).

    >>> truth("purchase", np.array([1, 0]), [" no", " yes"]).tolist()
    [1, 0]
    """
    from evtlm.tasks import answer_of

    label_index = np.asarray(label_index, dtype=np.int64)
    if answer_of(task) == "binary":
        return (label_index == list(label_space).index(" yes")).astype(np.int64)
    return label_index


def closed_with_unseen(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An answer outside the label space becomes an extra class no method gives probability to
    (a miss, the worst log loss); without such answers nothing changes.

    >>> p, t = closed_with_unseen(np.array([[0.6, 0.4], [0.5, 0.5]]), np.array([1, -1]))
    >>> p.tolist(), t.tolist()
    ([[0.6, 0.4, 0.0], [0.5, 0.5, 0.0]], [1, 2])
    """
    if (y >= 0).all():
        return probs, y
    extra = np.hstack([probs, np.zeros((len(probs), 1))])
    return extra, np.where(y >= 0, y, probs.shape[1])


def pad_ranking(ranked: np.ndarray, k: int) -> np.ndarray:
    """Rankings shorter than k (a catalog or a baseline list shorter than k) padded with -1."""
    ranked = np.asarray(ranked, dtype=np.int64)
    if ranked.shape[1] >= k:
        return ranked[:, :k]
    return np.pad(ranked, ((0, 0), (0, k - ranked.shape[1])), constant_values=-1)


def model_predictions(model: Any, recipe: Recipe, dataset: Any, example_ids: np.ndarray, depth: int,
                      progress: bool = False) -> np.ndarray:
    """A stream model's predictions for ``example_ids``: P(" yes") [n] (purchase), probabilities
    [n, C] (next_action) or the top-``depth`` label-space indices [n, depth] (next_item)."""
    from evtlm.train.stream_model import stream_predictions

    from evtlm.tasks import answer_of

    exclude = recipe.decode.exclude_history_items
    kind = answer_of(recipe.task.name)
    if kind in ("classes", "binary"):
        probs = stream_predictions(model, dataset, example_ids, batch_size=recipe.decode.batch_size, progress=progress)
        return probs[:, 1] if kind == "binary" else probs  # binary answers: [" no", " yes"]
    return stream_predictions(model, dataset, example_ids, top_k=depth, batch_size=recipe.decode.batch_size,
                              exclude_history=exclude, progress=progress)[0]
