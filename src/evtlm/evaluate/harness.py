"""`evaluate_run`: the fine-tuned model and every baseline on exactly the same examples.

One seeded sample of the split (``eval.max_examples``; all of it by default) is scored by the
model (stream runs: `evtlm.train.stream_model.stream_predictions`, every target read from its window;
per-example runs: constrained decoding, `evtlm.decode.inference.Decoder`) and by each baseline that fits the task
(`evtlm.evaluate.baselines`: fitted on the training examples, predicting from events strictly before each
label time). Every method is judged by the same `evtlm.evaluate.metrics` functions on the same N:

==============  ==========================================  ======================================
task            model                                       baselines
==============  ==========================================  ======================================
purchase        P(" yes") (softmax over " no"/" yes")       prior, popularity, gbt
next_action     distribution over the action label space    prior, markov, same_as_last, gbt
next_item       top-K over the full catalog (label space)   prior, popularity, transitions, repeat,
                                                            sasrec
==============  ==========================================  ======================================

Answers outside the label space (a cold item, an action first seen after training,
``label_index = -1``) stay in N and count as misses for every method. Under
``decode.exclude_history_items`` (next_item) every method ranks without the items of each
example's history: the same lists mask the model and each baseline (`evtlm.data.history.drop_excluded`).
The run directory gets ``metrics.json``, ``report.md`` and plots (`evtlm.evaluate.report`); next_item runs
also get ``label_items.json`` (item id of each label-space answer), which `evtlm predict` reads.

next_item answers are judged by the rendered answer for every method, as the model's are: item ids
that render alike (``verbalize.item: title``, two stock codes with one title) are one item for
the baselines too, in their histories, training targets, rankings and history masks
(`evtlm.decode.answers`).

next_action decisions: macro-F1 rewards the rare actions an argmax over the
probabilities never predicts, so every method (the model and each baseline alike) gets per-class
offsets fitted on its own validation predictions (`evtlm.evaluate.metrics.fit_class_offsets`); accuracy
and macro-F1 judge those decisions, log loss / Brier / ECE the probabilities as they are. The
model's offsets go to ``decision.json``, which `evtlm predict` applies.

purchase rows fitted on validation (`evtlm.evaluate.calibration`): ``model calibrated`` is the model's
P(yes) through a Platt scaler fitted on the validation split (``calibration.json``, which
`evtlm predict` applies; ROC-AUC unchanged, log loss / Brier / ECE before and after side by side),
and ``model+gbt`` stacks the model's logit with the gbt row's trees and features. The ``model``
row stays the raw softmax; the reading compares it with the baselines only.

Over tokenized shards (``data.by_shard``) the examples' labels come from the index tables (no
event text is built) and the purchase / next_action baselines read one shard's events at a time
(`evtlm.data.history_shards`), with the whole log's figures; the next-item baselines read the whole log.

`make_evaluate_fn` gives `evtlm.train.fit.fit` the task's own metric on a capped validation sample
(model only), so early stopping and the best checkpoint follow ROC-AUC / macro-F1 / NDCG@10.

>>> sample_rows(10, 4, seed=0).tolist() == sample_rows(10, 4, seed=0).tolist(), len(sample_rows(10, None, 0))
(True, 10)
>>> primary_metric("next_item", [1, 5, 20])        # NDCG@10 unless 10 is not among eval.k
('ndcg@20', True)
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evtlm.decode.answers import answer_index, as_answers
from evtlm.errors import TaskError
from evtlm.data.history import drop_excluded
from evtlm.decode.inference import LABEL_ITEMS, Decoder, action_names, check_task, history_exclusions, label_item_ids
from evtlm.recipe import Recipe

__all__ = ["evaluate_run", "make_evaluate_fn", "score_model", "sample_rows", "primary_metric", "MODEL"]

MODEL = "model"  # the fine-tuned LM's row in every table


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

    def score(pos: np.ndarray) -> np.ndarray:
        part = [prompts[i] for i in pos]
        if task == "purchase":
            return decoder.probs(part)[:, decoder.label_space.index(" yes")]
        if task == "next_action":
            return decoder.probs(part)
        return decoder.items(part, top_k, None if exclude is None else [exclude[i] for i in pos])[0]

    return shard_scores(len(prompts), score)


def method_metrics(task: str, pred: np.ndarray, y: np.ndarray, ks: Sequence[int], n_bins: int,
                   offsets: np.ndarray | None = None) -> dict[str, float]:
    """Every metric of the task for one method. ``y``: see `truth`. ``offsets`` (next_action):
    the decision rule fitted on validation (`evtlm.evaluate.metrics.fit_class_offsets`) that accuracy and
    macro-F1 judge; log loss, Brier and ECE judge the probabilities as they are."""
    from evtlm.evaluate import metrics as M

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.MetricWarning)  # NaN AUC on one class: visible in the table
        if task == "purchase":  # p_std: the spread of P(yes); near 0, a model that learned only the base rate
            return {**M.binary_metrics(y, pred, n_bins=n_bins), "p_std": float(np.std(pred)) if len(pred) else float("nan")}
        if task == "next_action":
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
    label_index = np.asarray(label_index, dtype=np.int64)
    if task == "purchase":
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


# ------------------------------------------------------------------------- training-time metric
def make_evaluate_fn(recipe: Recipe, prepared: Any) -> tuple[Callable | None, str, bool]:
    """``(evaluate_fn, metric_for_best, greater_is_better)`` for `evtlm.train.fit.fit`.

    ``evaluate_fn(model)`` scores a seeded sample of at most ``eval.fit_max_examples`` validation
    examples with the model alone and returns every task metric. Without validation examples (or
    for pretrain) it is None and fit selects on the validation loss.
    """
    task = recipe.task.name
    valid = prepared.datasets.get("valid")
    if task not in ("purchase", "next_action", "next_item") or valid is None or len(valid) == 0:
        return None, "valid_loss", False
    if recipe.task.formulation == "stream":
        return _stream_evaluate_fn(recipe, prepared)
    rows = sample_rows(len(valid), min(recipe.eval.fit_max_examples, recipe.train.max_eval_examples or 10**12),
                       recipe.train.seed)
    prompts = _prompts(valid, rows)
    y = truth(task, np.asarray(valid["label_index"])[rows], prepared.label_space)
    ks = sorted(set(recipe.eval.k))
    metric, greater = primary_metric(task, ks)
    if task == "purchase" and len(np.unique(y)) < 2:
        metric, greater = "log_loss", False  # AUC is undefined on one class; log loss still ranks
    tokenizer, space = prepared.tokenizer, list(prepared.label_space)

    def evaluate_fn(model) -> dict[str, float]:
        decoder = Decoder(model, tokenizer, task, space, recipe.decode)
        pred = score_model(decoder, task, prompts, top_k=max(ks))
        return {k: float(v) for k, v in method_metrics(task, pred, y, ks, recipe.eval.ece_bins).items()}

    return evaluate_fn, metric, greater


def _stream_evaluate_fn(recipe: Recipe, prepared: Any) -> tuple[Callable, str, bool]:
    """Every validation target scored from its stream window (cheap: one pass per window).
    next_action is judged with a decision rule fitted on the same validation data: the
    selection metric of a model whose final rule is fitted there too."""
    from evtlm.evaluate import metrics as M

    task, ks = recipe.task.name, sorted(set(recipe.eval.k))
    ix = prepared.index["valid"]
    ids = ix["example_id"].to_numpy()
    y = truth(task, ix["label_index"].to_numpy(), prepared.label_space)
    metric, greater = primary_metric(task, ks)
    if task == "purchase" and len(np.unique(y)) < 2:
        metric, greater = "log_loss", False  # AUC is undefined on one class; log loss still ranks

    def evaluate_fn(model) -> dict[str, float]:
        pred = model_predictions(model, recipe, prepared.datasets["valid"], ids, max(ks))
        offsets = M.fit_class_offsets(y, pred) if task == "next_action" else None
        return {k: float(v) for k, v in method_metrics(task, pred, y, ks, recipe.eval.ece_bins, offsets).items()}

    return evaluate_fn, metric, greater


def model_predictions(model: Any, recipe: Recipe, dataset: Any, example_ids: np.ndarray, depth: int,
                      progress: bool = False) -> np.ndarray:
    """A stream model's predictions for ``example_ids``: P(" yes") [n] (purchase), probabilities
    [n, C] (next_action) or the top-``depth`` label-space indices [n, depth] (next_item)."""
    from evtlm.train.stream_model import stream_predictions

    exclude = recipe.decode.exclude_history_items
    if recipe.task.name in ("next_action", "purchase"):
        probs = stream_predictions(model, dataset, example_ids, batch_size=recipe.decode.batch_size, progress=progress)
        return probs[:, 1] if recipe.task.name == "purchase" else probs  # purchase answers: [" no", " yes"]
    return stream_predictions(model, dataset, example_ids, top_k=depth, batch_size=recipe.decode.batch_size,
                              exclude_history=exclude, progress=progress)[0]


# ------------------------------------------------------------------------------- evaluate_run
def evaluate_run(run_dir: str | Path, split: str = "test", recipe: Recipe | None = None, prepared: Any = None,
                 model: Any = None, progress: bool = True, *, max_examples: int | None = None,
                 baselines: Sequence[str] | None = None, write: bool = True, overrides: Sequence[str] = (),
                 follower: bool = False) -> dict[str, Any]:
    """Score the run's model and the task's baselines on the same examples; write the report.

    Under several processes every process calls this (the model's scoring is shared across
    them, `evtlm.sharded`); all but the main one pass ``follower=True``: they make only the
    model's scoring calls, in the same order, and return an empty dict.

    ``recipe``/``prepared``/``model`` default to what the run directory holds (the recipe and
    model it saved; the data prepared again with the run's tokenizer, from the cache when
    possible). ``max_examples`` overrides ``eval.max_examples``; ``baselines`` overrides
    ``eval.baselines``; ``overrides`` (the ``key=value`` strings ``recipe`` was loaded with) are
    stated in the report. Returns the content of ``metrics.json``.
    """
    from evtlm.decode.inference import load_run_recipe
    from evtlm.tasks.splits import SPLITS

    run_dir = Path(run_dir)
    from evtlm.data.prepare import text_recipe

    recipe = text_recipe(recipe or load_run_recipe(run_dir))  # item tokens: labels are <item_…>
    if model is None:  # the weights come from disk: only those of a finished run (before any work)
        from evtlm.train.run_dir import require_finished

        require_finished(run_dir)
    task = recipe.task.name
    check_task(task, "evaluate")
    if split not in SPLITS:
        raise TaskError(f"unknown split {split!r}", where="--split", fix=f"use one of {', '.join(SPLITS)}")
    if prepared is None:  # the log is read again: stop now, in one line, if it moved or changed
        from evtlm.ingest.provenance import check_data_files

        check_data_files(run_dir, recipe.data)
    tokenizer = prepared.tokenizer if prepared is not None else None
    if model is None:
        from evtlm.decode.inference import load_for_inference

        model, tokenizer = load_for_inference(run_dir)
    if prepared is None:
        from evtlm.data.prepare import prepare

        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(run_dir / "tokenizer")
        prepared = prepare(recipe, tokenizer=tokenizer, progress=progress)
    tokenizer = prepared.tokenizer
    space = list(prepared.label_space)
    from evtlm.data.prepare import ExampleLabels, history_items

    ds = prepared.datasets[split]
    frames = ExampleLabels(prepared.index)  # what metrics and baselines read: the index tables, never the event text
    examples = frames[split]
    stream = recipe.task.formulation == "stream"  # rows of ds are windows; the examples are prepared.index
    if len(ds) == 0:
        raise TaskError(f"the {split} split has no examples", where=f"split {split!r}",
                        fix="widen the data window (split.valid_days / split.test_days)")
    ds_ids = prepared.index[split]["example_id"].to_numpy() if stream else np.asarray(ds["example_id"])
    if not np.array_equal(ds_ids, examples["example_id"].to_numpy()):
        raise TaskError("the tokenized examples and the example index are not in the same order", where=f"split {split!r}",
                        fix="rebuild the data cache (delete ~/.cache/evtlm/datasets)")
    n_split = len(ds_ids)
    cap = max_examples if max_examples is not None else recipe.eval.max_examples
    rows = sample_rows(n_split, cap, recipe.train.seed)
    y = truth(task, examples["label_index"].to_numpy()[rows], space)
    chosen = examples.iloc[rows].reset_index(drop=True)
    ks = sorted(set(recipe.eval.k))
    depth = max(ks)
    item_ids = answers = None
    exclude = None  # decode.exclude_history_items: one mask, each example's history items, for every method
    # the event table is read by the main process only (the baselines, the masks), except where a
    # follower's own decoding needs the masks (per-example prompts)
    if task == "next_item" and (not follower or (not stream and recipe.decode.exclude_history_items)):
        item_ids = label_item_ids(space, prepared.events.events, prepared.events.catalog, recipe.verbalize)
        answers = answer_index(space, prepared.events.events, prepared.events.catalog, recipe.verbalize)
        if recipe.decode.exclude_history_items:
            exclude = history_exclusions(history_items(prepared.events, prepared.index[split].iloc[rows]), answers)

    preds: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    # ---- the model
    t0 = time.perf_counter()
    offsets: dict[str, np.ndarray] = {}  # next_action: each method's decision rule, fitted on validation
    if stream and task == "next_item" and recipe.decode.exclude_history_items:
        # the stream masks its window; the full history is masked as for the rest, ranked deep
        # enough to drop it (the main process's depth on every process: one collective shape)
        from evtlm.sharded import gather_parts

        deep = gather_parts(None if follower else depth + max(map(len, exclude), default=0))[0]
        pred = model_predictions(model, recipe, ds, ds_ids[rows], deep, progress=progress)
        preds[MODEL] = pred if follower else drop_excluded(pred, exclude, depth)[0]
    elif stream:
        preds[MODEL] = model_predictions(model, recipe, ds, ds_ids[rows], depth, progress=progress)
        if task == "next_action":
            from evtlm.evaluate import metrics as M

            vix = prepared.index["valid"]
            v_pred = model_predictions(model, recipe, prepared.datasets["valid"], vix["example_id"].to_numpy(), depth)
            offsets[MODEL] = M.fit_class_offsets(truth(task, vix["label_index"].to_numpy(), space), v_pred)
    else:
        decoder = Decoder(model, tokenizer, task, space, recipe.decode)
        preds[MODEL] = score_model(decoder, task, _prompts(ds, rows), top_k=depth, exclude=exclude)
    seconds[MODEL] = time.perf_counter() - t0

    # ---- the baselines: fitted on the training examples, predicting the same chosen examples
    from evtlm.evaluate.baselines import get_baselines
    from evtlm.data.history import HistoryIndex

    bases = get_baselines(task, recipe.eval, names=baselines, k=depth, level=recipe.task.level, progress=progress)
    sharded_events = getattr(prepared, "sharded_events", None)  # tokenized shards (evtlm.data.shard_prepare)
    by_shard = sharded_events is not None and all(task in b.shardable for b in bases)
    if follower and not by_shard:  # the main process fits the baselines; the model's last scoring call is purchase's validation
        if task == "purchase":
            _purchase_valid_scores(recipe, prepared, model, tokenizer, split == "valid")
        return {}
    train = frames["train"]
    if by_shard:  # each process reads its own shards, one at a time; every process gets every figure
        index = sharded_events()
    else:
        log = prepared.events
        if answers is not None:  # ids sharing an answer are one item, for the baselines as for the model
            log, train = as_answers(log, train, answers, item_ids)
        index = HistoryIndex(log)
    labels = action_names(space, recipe.verbalize) if task == "next_action" else item_ids
    fitted: dict[str, Any] = {}  # purchase: the gbt row's trees feed the model+gbt stack
    for base in bases:
        t0 = time.perf_counter()
        base.fit(train, index, labels=labels)
        out = base.predict(chosen, index, exclude=exclude)
        preds[base.name] = out.catalog_index if task == "next_item" else np.asarray(out, dtype=np.float64)
        if task == "next_action" and MODEL in offsets:  # the same decision-rule fitting for every method
            from evtlm.evaluate import metrics as M

            valid_ex = frames["valid"]
            v_pred = np.asarray(base.predict(valid_ex, index), dtype=np.float64)
            offsets[base.name] = M.fit_class_offsets(truth(task, valid_ex["label_index"].to_numpy(), space), v_pred)
        seconds[base.name] = time.perf_counter() - t0
        fitted[base.name] = base
    extras = None
    if task == "purchase":  # the calibrator and the model+gbt stack, fitted on validation only
        extras = _purchase_extras(recipe, prepared, frames, model, tokenizer, fitted, index, chosen, preds[MODEL], y,
                                  rows if split == "valid" else None)
        preds.update(extras.preds)
        seconds.update(extras.seconds)
    if follower:  # its shards' parts are in; the main process writes the report
        return {}
    n = len(rows)
    assert all(len(p) == n for p in preds.values()), {k: len(p) for k, p in preds.items()}  # same N for all

    table = {name: method_metrics(task, p, y, ks, recipe.eval.ece_bins, offsets.get(name)) for name, p in preds.items()}
    metric, greater = primary_metric(task, ks)
    result = {
        "task": task, "split": split, "n": n, "n_split": n_split, "sampled": n < n_split, "seed": recipe.train.seed,
        "formulation": recipe.task.formulation,
        "exclude_history_items": exclude is not None, "overrides": list(overrides),
        "decision_rule": ({k: [round(float(x), 3) for x in v] for k, v in offsets.items()} if offsets else None),
        "primary_metric": metric, "greater_is_better": greater, "label_space_size": len(space),
        "outside_label_space": int((y < 0).sum()) if task != "purchase" else 0, "k": ks,
        "methods": {name: {**{k: _num(v) for k, v in m.items()}, "seconds": round(seconds[name], 3)}
                    for name, m in table.items()},
    }
    if extras is not None:
        result.update(extras.info)  # "calibration" and "stack": what was fitted, on what, before / after
    if write:
        from evtlm.fsio import atomic_write_text  # files predict reads back: never half-written
        from evtlm.evaluate.report import write_report

        if task == "next_item":
            atomic_write_text(run_dir / LABEL_ITEMS, json.dumps(item_ids, ensure_ascii=False))
        if MODEL in offsets:  # evtlm predict answers with the same decision rule
            from evtlm.decode.inference import DECISION_FILE

            atomic_write_text(run_dir / DECISION_FILE, json.dumps({"offsets": offsets[MODEL].tolist(), "fitted_on": "valid",
                                                                   "rule": "argmax(log p + offsets), offsets maximise validation macro-F1"}) + "\n")
        curves = {"y": y, "preds": preds, "label_space": space, "n_bins": recipe.eval.ece_bins,
                  "class_names": action_names(space, recipe.verbalize) if task == "next_action" else None}
        if extras is not None:  # evtlm predict applies the same calibrator
            from evtlm.evaluate.calibration import save_calibration

            save_calibration(run_dir, extras.calibrator)
            curves.update(extras.curves)
        result["files"] = write_report(run_dir, result, curves)
        atomic_write_text(run_dir / "metrics.json", json.dumps(result, indent=1, allow_nan=True) + "\n")
        _update_card(run_dir, result)
    return result


VALID_CAP = 20_000  # purchase: validation examples the calibrator and the stack are fitted on (a seeded sample above)


def _purchase_extras(recipe: Recipe, prepared: Any, frames: Any, model: Any, tokenizer: Any, fitted: dict[str, Any],
                     index: Any, chosen: pd.DataFrame, p_model: np.ndarray, y: np.ndarray, report_rows: np.ndarray | None):
    """The ``model calibrated`` and ``model+gbt`` rows (`evtlm.evaluate.calibration.purchase_extras`): the model
    scores the validation split, the calibrator and the stack are fitted there and predict the
    reported examples. ``report_rows``: the reported positions when the report is on validation."""
    from evtlm.evaluate.baselines import get_baselines
    from evtlm.evaluate.calibration import purchase_extras

    t0 = time.perf_counter()
    space = list(prepared.label_space)
    vrows, p_valid = _purchase_valid_scores(recipe, prepared, model, tokenizer, report_rows is not None)
    valid_ex = frames["valid"].iloc[vrows].reset_index(drop=True) if len(vrows) else chosen.head(0)
    valid_seconds = time.perf_counter() - t0
    gbt = fitted.get("gbt")
    if gbt is None:  # the gbt row was not asked for: the stack still reads the same trees
        gbt = get_baselines("purchase", recipe.eval, names=["gbt"], level=recipe.task.level)[0]
        gbt.fit(frames["train"], index)
    return purchase_extras(np.asarray(p_valid, dtype=np.float64), truth("purchase", valid_ex["label_index"].to_numpy(), space),
                           p_model, y, gbt=gbt, index=index, valid_examples=valid_ex, report_examples=chosen,
                           report_rows=report_rows, method=recipe.eval.calibration, n_bins=recipe.eval.ece_bins,
                           seed=recipe.train.seed,
                           valid_seconds=valid_seconds)


def _purchase_valid_scores(recipe: Recipe, prepared: Any, model: Any, tokenizer: Any,
                           all_rows: bool) -> tuple[np.ndarray, np.ndarray]:
    """The validation rows the calibrator and the stack are fitted on (all of them when the
    report is on validation, else a seeded sample of `VALID_CAP`) and the model's P(yes) there."""
    space, valid = list(prepared.label_space), prepared.datasets.get("valid")
    stream = recipe.task.formulation == "stream"  # rows of a stream dataset are windows, not examples
    n_valid = 0 if valid is None else len(prepared.index["valid"]) if stream else len(valid)  # 0: skipped, with why
    vrows = np.arange(n_valid) if all_rows else sample_rows(n_valid, VALID_CAP, recipe.train.seed)
    if not n_valid:
        return vrows, np.zeros(0)
    if stream:
        v = np.asarray(model_predictions(model, recipe, valid, prepared.index["valid"]["example_id"].to_numpy()[vrows], 1))
        return vrows, v[:, space.index(" yes")] if v.ndim == 2 else v
    decoder = Decoder(model, tokenizer, "purchase", space, recipe.decode)
    return vrows, score_model(decoder, "purchase", _prompts(valid, vrows))


CARD_MARK = "## Evaluation against baselines"


def _update_card(run_dir: Path, result: dict[str, Any]) -> None:
    """Put the evaluation table into the run's README.md (replacing an earlier one)."""
    from evtlm.evaluate.report import markdown_table, reading

    card = run_dir / "README.md"
    if not card.is_file():
        return
    text = card.read_text()
    head, _, rest = text.partition(CARD_MARK)
    tail = rest.partition("\n## ")[2] if rest else ""  # the section after ours, if any
    section = [CARD_MARK, "", reading(result), "", markdown_table(result), "", "Details: `report.md`, `metrics.json`.", ""]
    card.write_text(head.rstrip() + "\n\n" + "\n".join(section) + ("\n## " + tail if tail else ""))


def _num(v: float) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v


def results_frame(result: dict[str, Any]) -> pd.DataFrame:
    """``metrics.json`` methods as a table: one row per method, metric columns (seconds last)."""
    frame = pd.DataFrame(result["methods"]).T
    cols = [c for c in frame.columns if c != "seconds"] + ["seconds"]
    return frame[cols]
