"""`predict_file`: one prediction per user of a history file, from a run directory alone.

This module owns the order of a prediction run (read the history, build each chunk's prompts or
windows, decode, write); the history file is read by `evtlm.predict.history_file`, the records are
formatted and written by `evtlm.predict.records`. It reads the run directory and writes only the
predictions file: it never trains or fits anything.

The history file is read through the run's data mapping (``recipe.resolved.yaml``'s ``data``
section with the path replaced; a run trained on the embedded synthetic shop reads files written
by ``evtlm simulate``, preset ``evtlm_shop``; ``preset=`` names another format). Each user's
prompt is their whole history at the prediction time ``as_of`` (default: just after the file's
last event), laid out by the training code (`evtlm.decode.inference.now_prompts`: same verbalizer,
same token layout, oldest events dropped to fit ``task.max_tokens``), then decoded under the
run's label space. Records (JSONL, or CSV when the output ends in ``.csv``):

================  ==================================================================
purchase          ``{"user_id", "p_purchase", "answer": "yes" | "no"}``; with the run's
                  ``calibration.json`` (written by `evtlm evaluate`, fitted on validation)
                  ``p_purchase`` is the calibrated probability (as the report's ``model
                  calibrated`` row) and ``p_raw`` the model's raw softmax beside it
next_action       ``{"user_id", "answer", "probs": {action: p}}`` (canonical actions)
next_item         ``{"user_id", "items": [{"item_id", "score"}, ...]}``, best first; the
                  score is the answer's log-probability. Only label-space items are
                  ever predicted; unknown items in a history are verbalized like any other
any user without  ``{"user_id", "error": "..."}``: every row dropped while reading, no
a prompt          event before ``as_of``, fewer than ``task.min_history`` events
================  ==================================================================

Users are processed ``chunk_users`` at a time (verbalize, tokenize, decode, write), so the
memory beyond the event table itself stays bounded however many users the file holds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evtlm.errors import DataError, RecipeError
from evtlm.fsio import writing
from evtlm.decode.inference import (
    DECISION_FILE,
    Decoder,
    action_names,
    check_task,
    history_exclusions,
    load_run_recipe,
    now_prompts,
    read_label_space,
    run_label_items,
)
from evtlm.predict.history_file import history_data_config, parse_as_of, raw_user_ids
from evtlm.predict.records import RecordWriter, _records
from evtlm.tasks import answer_of

__all__ = ["predict_file", "history_data_config", "RecordWriter"]


def _decision_offsets(run_dir: Path) -> np.ndarray | None:
    """next_action: the decision rule `evtlm evaluate` fitted on validation (``decision.json``)."""
    path = run_dir / DECISION_FILE
    return np.asarray(json.loads(path.read_text())["offsets"], dtype=np.float64) if path.is_file() else None


def _stream_records(model, part, catalog, recipe, tokenizer, space, task, k, actions, item_ids, batch_size, offsets,
                    calibrator=None, cutoff=None):
    """Records of one chunk of users for a stream model: one window each, read after the last event
    (purchase: its features as of ``cutoff``, the prediction time)."""
    kind = answer_of(task)
    from evtlm.data.stream import now_windows
    from evtlm.train.stream_model import stream_predictions

    now = now_windows(part, catalog, recipe, tokenizer, space, cutoff_ns=cutoff)
    bs = batch_size or recipe.decode.batch_size
    ok = now.ok.tolist()
    users = [now.user_ids[i] for i in ok]
    if not ok:
        result = (np.zeros((0, k), int), np.zeros((0, k))) if kind == "ranking" else np.zeros((0, len(space)))
    elif kind == "ranking":
        result = stream_predictions(model, now.dataset, now.ok, top_k=k, batch_size=bs,
                                    exclude_history=recipe.decode.exclude_history_items)
    else:
        result = stream_predictions(model, now.dataset, now.ok, batch_size=bs)
        if kind == "binary":
            result = result[:, space.index(" yes")]
    good = dict(zip(ok, _records(task, users, result, actions, item_ids, offsets, calibrator)))
    return [good[i] if i in good else {"user_id": now.user_ids[i], "error": now.errors[i]} for i in range(len(now.user_ids))]


# ------------------------------------------------------------------------------------ predict
def predict_file(run_dir: str | Path, history_path: str | Path, out_path: str | Path | None = None,
                 preset: str | None = None, top_k: int | None = None, batch_size: int | None = None,
                 progress: bool = True, *, on_bad_rows: str = "skip", as_of: str | None = None,
                 chunk_users: int = 1024, model: Any = None) -> dict[str, Any]:
    """Write one record per user of ``history_path`` (see the module doc); returns a summary
    ``{"out", "users", "predicted", "errors", "dropped_rows"}``.

    ``as_of`` (ISO time, UTC when naive): predict as of then, ignoring later events.
    ``on_bad_rows``: ``skip`` (default) drops unreadable rows and counts them; ``error`` stops.
    """
    from tqdm.auto import tqdm

    from evtlm.ingest.presets import load_event_log

    run_dir, history_path = Path(run_dir), Path(history_path)
    out = Path(out_path) if out_path is not None else history_path.with_name(history_path.name.split(".")[0] + ".preds.jsonl")
    if top_k is not None and top_k < 1 or batch_size is not None and batch_size < 1 or chunk_users < 1:
        raise RecipeError(f"top_k={top_k}, batch_size={batch_size}, chunk_users={chunk_users}: each must be >= 1",
                          where="evtlm predict", fix="give positive numbers")
    as_of_ns = None if as_of is None else parse_as_of(as_of)  # bad input stops before any work
    with writing(out, "writing the predictions (--out)"):  # so does an output folder that cannot be made
        out.parent.mkdir(parents=True, exist_ok=True)
    recipe = load_run_recipe(run_dir)
    if model is None:  # the weights come from disk: only those of a finished run (a killed one may be half-written)
        from evtlm.train.run_dir import require_finished

        require_finished(run_dir)
    task = recipe.task.name
    check_task(task, "predict")
    space = read_label_space(run_dir)
    if not history_path.is_file():
        raise DataError(f"history file not found: {history_path}", where="--history",
                        fix="give the path of an event log (e.g. one written by `evtlm simulate`)")
    cfg = history_data_config(recipe.data, history_path, preset, on_bad_rows)
    log = load_event_log(cfg)
    events = log.events
    ts = events["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    cutoff = int(ts.max()) + 1 if as_of_ns is None else as_of_ns  # default: after the last event, all is history
    all_users = pd.unique(events["user_id"].to_numpy(dtype=object))
    events = events.loc[ts < cutoff].reset_index(drop=True) if as_of is not None else events
    raw = raw_user_ids(cfg)
    known = pd.Index(pd.unique(events["user_id"].to_numpy(dtype=object)))
    lost: dict[str, str] = {}
    for u in pd.Index(all_users).difference(known):
        lost[str(u)] = f"no events before --as-of {as_of}"
    if raw is not None:
        gone = pd.Index(raw).difference(pd.Index(all_users))
        why = ", ".join(f"{k}: {v}" for k, v in log.report.dropped.items()) or "filters"
        for u in gone:
            lost[str(u)] = f"no usable events: every row of this user was dropped while reading ({why} in the file)"

    if model is None:
        from evtlm.decode.inference import load_for_inference

        model, tokenizer = load_for_inference(run_dir)
    else:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(run_dir / "tokenizer")
    stream = getattr(model, "is_stream", False)  # windows read after the last event (evtlm.data.stream)
    if not stream:
        decoder = Decoder(model, tokenizer, task, space, recipe.decode)
        reserve = space[int(np.argmax([len(c) for c in decoder.candidates]))]  # room for the longest answer
    kind = answer_of(task)
    offsets = _decision_offsets(run_dir) if kind == "classes" else None
    calibrator = None
    if kind == "binary":
        from evtlm.evaluate.calibration import load_calibration

        calibrator = load_calibration(run_dir)  # None until `evtlm evaluate` (or finetune) wrote calibration.json
    k = min(top_k or recipe.decode.top_k, len(space))
    actions = action_names(space, recipe.verbalize) if kind == "classes" else None
    item_ids = run_label_items(run_dir, space, log.events, log.catalog, recipe.verbalize) if kind == "ranking" else None
    item_index = {i: n for n, i in enumerate(item_ids)} if item_ids else {}

    # users are contiguous in the sorted table: chunk by user, slice rows
    codes = pd.factorize(events["user_id"])[0]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(codes) else np.zeros(0, np.int64)
    bounds = np.append(starts, len(events))
    writer = RecordWriter(out, task, k, actions, calibrated=calibrator is not None and calibrator.skipped is None)
    n_pred = n_err = 0
    bar = tqdm(total=len(starts) + len(lost), desc="predict", unit="user", disable=not progress, file=sys.stderr)
    committed = False
    try:
        for lo in range(0, len(starts), chunk_users):
            hi = min(lo + chunk_users, len(starts))
            part = events.iloc[bounds[lo]:bounds[hi]]
            if stream:
                records = _stream_records(model, part, log.catalog, recipe, tokenizer, space, task, k, actions,
                                          item_ids, batch_size, offsets, calibrator, cutoff)
                writer.write(records)
                n_ok = sum("error" not in r for r in records)
                n_pred, n_err = n_pred + n_ok, n_err + len(records) - n_ok
                bar.update(hi - lo)
                continue
            now = now_prompts(part, log.catalog, recipe, tokenizer, reserve, cutoff)
            ok = [i for i, p in enumerate(now.prompts) if p is not None]
            prompts = [now.prompts[i] for i in ok]
            users = [now.user_ids[i] for i in ok]
            if kind == "ranking":
                exclude = history_exclusions([now.history_items[i] for i in ok], item_index) \
                    if recipe.decode.exclude_history_items else None
                result = decoder.items(prompts, k, exclude, batch_size) if prompts else (np.zeros((0, k), int), np.zeros((0, k)))
            else:
                probs = decoder.probs(prompts, batch_size) if prompts else np.zeros((0, len(space)))
                result = probs[:, space.index(" yes")] if kind == "binary" else probs
            good = dict(zip(ok, _records(task, users, result, actions, item_ids, offsets, calibrator)))
            records = [good[i] if i in good else {"user_id": now.user_ids[i], "error": now.errors[i]}
                       for i in range(len(now.user_ids))]
            writer.write(records)
            n_pred += len(good)
            n_err += len(records) - len(good)
            bar.update(hi - lo)
        writer.write([{"user_id": u, "error": why} for u, why in lost.items()])
        n_err += len(lost)
        bar.update(len(lost))
        writer.close(commit=True)
        committed = True
    finally:
        bar.close()
        if not committed:  # an error or Ctrl-C: no partial predictions file is left behind
            writer.close(commit=False)
    return {"out": str(out), "users": n_pred + n_err, "predicted": n_pred, "errors": n_err,
            "dropped_rows": dict(log.report.dropped), "as_of": pd.Timestamp(cutoff, tz="UTC").isoformat()}
