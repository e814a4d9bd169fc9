"""`evaluate_run`: the fine-tuned model and every baseline on exactly the same examples.

This module owns the order of an evaluation (which examples, which methods, what is written to the
run directory); how a method is scored lives in `evtlm.evaluate.scoring`, the purchase rows fitted
on validation in `evtlm.evaluate.purchase_validation` and `evtlm.evaluate.calibration`, the run card in
`evtlm.evaluate.run_card`, the training-time metric in `evtlm.evaluate.training_metric`. It never
trains the model, and no test label reaches a fit.

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
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evtlm.decode.answers import answer_index, as_answers
from evtlm.errors import TaskError
from evtlm.data.history import drop_excluded
from evtlm.decode.inference import LABEL_ITEMS, Decoder, action_names, check_task, history_exclusions, label_item_ids
from evtlm.evaluate.purchase_validation import _purchase_extras, _purchase_valid_scores
from evtlm.evaluate.run_card import _update_card
from evtlm.evaluate.scoring import _prompts, method_metrics, model_predictions, primary_metric, sample_rows, score_model, truth
from evtlm.evaluate.training_metric import make_evaluate_fn
from evtlm.recipe import Recipe

__all__ = ["evaluate_run", "make_evaluate_fn", "score_model", "sample_rows", "primary_metric", "MODEL"]

MODEL = "model"  # the fine-tuned LM's row in every table


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
    from evtlm.tasks import answer_of

    kind = answer_of(task)  # binary, classes or ranking: how predictions look and are judged
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
    if kind == "ranking" and (not follower or (not stream and recipe.decode.exclude_history_items)):
        item_ids = label_item_ids(space, prepared.events.events, prepared.events.catalog, recipe.verbalize)
        answers = answer_index(space, prepared.events.events, prepared.events.catalog, recipe.verbalize)
        if recipe.decode.exclude_history_items:
            exclude = history_exclusions(history_items(prepared.events, prepared.index[split].iloc[rows]), answers)

    preds: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    # ---- the model
    t0 = time.perf_counter()
    offsets: dict[str, np.ndarray] = {}  # next_action: each method's decision rule, fitted on validation
    if stream and kind == "ranking" and recipe.decode.exclude_history_items:
        # the stream masks its window; the full history is masked as for the rest, ranked deep
        # enough to drop it (the main process's depth on every process: one collective shape)
        from evtlm.sharded import gather_parts

        deep = gather_parts(None if follower else depth + max(map(len, exclude), default=0))[0]
        pred = model_predictions(model, recipe, ds, ds_ids[rows], deep, progress=progress)
        preds[MODEL] = pred if follower else drop_excluded(pred, exclude, depth)[0]
    elif stream:
        preds[MODEL] = model_predictions(model, recipe, ds, ds_ids[rows], depth, progress=progress)
        if kind == "classes":
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
    labels = action_names(space, recipe.verbalize) if kind == "classes" else item_ids
    fitted: dict[str, Any] = {}  # purchase: the gbt row's trees feed the model+gbt stack
    for base in bases:
        t0 = time.perf_counter()
        base.fit(train, index, labels=labels)
        out = base.predict(chosen, index, exclude=exclude)
        preds[base.name] = out.catalog_index if kind == "ranking" else np.asarray(out, dtype=np.float64)
        if kind == "classes" and MODEL in offsets:  # the same decision-rule fitting for every method
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
        "outside_label_space": int((y < 0).sum()) if kind != "binary" else 0, "k": ks,
        "methods": {name: {**{k: _num(v) for k, v in m.items()}, "seconds": round(seconds[name], 3)}
                    for name, m in table.items()},
    }
    sampled_fits = {b.name: f"{b.sampled_fit[0]:,} of {b.sampled_fit[1]:,} training examples"
                    for b in bases if getattr(b, "sampled_fit", None)}
    if sampled_fits:  # a baseline that learned from a sample of the training split (eval.gbt.max_train_examples)
        result["sampled_fits"] = sampled_fits
    if extras is not None:
        result.update(extras.info)  # "calibration" and "stack": what was fitted, on what, before / after
    if write:
        from evtlm.fsio import atomic_write_text  # files predict reads back: never half-written
        from evtlm.evaluate.report import write_report

        if kind == "ranking":
            atomic_write_text(run_dir / LABEL_ITEMS, json.dumps(item_ids, ensure_ascii=False))
        if MODEL in offsets:  # evtlm predict answers with the same decision rule
            from evtlm.decode.inference import DECISION_FILE

            atomic_write_text(run_dir / DECISION_FILE, json.dumps({"offsets": offsets[MODEL].tolist(), "fitted_on": "valid",
                                                                   "rule": "argmax(log p + offsets), offsets maximise validation macro-F1"}) + "\n")
        curves = {"y": y, "preds": preds, "label_space": space, "n_bins": recipe.eval.ece_bins,
                  "class_names": action_names(space, recipe.verbalize) if kind == "classes" else None}
        if extras is not None:  # evtlm predict applies the same calibrator
            from evtlm.evaluate.calibrator import save_calibration

            save_calibration(run_dir, extras.calibrator)
            curves.update(extras.curves)
        result["files"] = write_report(run_dir, result, curves)
        atomic_write_text(run_dir / "metrics.json", json.dumps(result, indent=1, allow_nan=True) + "\n")
        _update_card(run_dir, result)
    return result


def _num(v: float) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v


def results_frame(result: dict[str, Any]) -> pd.DataFrame:
    """``metrics.json`` methods as a table: one row per method, metric columns (seconds last)."""
    frame = pd.DataFrame(result["methods"]).T
    cols = [c for c in frame.columns if c != "seconds"] + ["seconds"]
    return frame[cols]
