"""`predict_file`: one prediction per user of a history file, from a run directory alone.

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

import csv
import json
import math
import os
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
from evtlm.recipe import DataConfig

__all__ = ["predict_file", "history_data_config", "RecordWriter"]


def history_data_config(data: DataConfig, path: str | Path, preset: str | None = None,
                        on_bad_rows: str = "skip") -> DataConfig:
    """The run's data mapping for another file: path replaced, training-only filters removed.

    ``max_users`` (a training subset) and the ``start``/``end`` window (the training data's
    range, also a preset's) do not apply to a new history file.

    >>> history_data_config(DataConfig(), "shop.csv").preset          # trained on the embedded shop
    'evtlm_shop'
    >>> c = history_data_config(DataConfig(preset="taobao", path="a.csv", max_users=9), "b.csv")
    >>> c.preset, c.path, c.max_users, c.start
    ('taobao', 'b.csv', None, None)
    """
    path = str(path)
    if preset is not None:
        return DataConfig(preset=preset, path=path, on_bad_rows=on_bad_rows)
    if data.path is None and data.preset is None:  # the embedded shop: its files come from `evtlm simulate`
        return DataConfig(preset="evtlm_shop", path=path, on_bad_rows=on_bad_rows)
    explicit = data.model_dump(exclude_defaults=True)
    explicit.update(path=path, on_bad_rows=on_bad_rows, max_users=None, start=None, end=None)
    return DataConfig.model_validate(explicit)


def raw_user_ids(cfg: DataConfig) -> np.ndarray | None:
    """Every user id of the file as read (before bad rows and filters), or None when the format's
    reader derives users itself (then lost users cannot be named)."""
    from evtlm.ingest.events import Ingest
    from evtlm.ingest.presets import PRESETS, resolve_data_config
    from evtlm.ingest.values import clean_ids

    resolved = resolve_data_config(cfg)
    preset = PRESETS.get(resolved.preset) if resolved.preset else None
    if preset is not None and preset.reader is not None and preset.name != "evtlm_shop":
        return None
    ingest = Ingest(resolved.model_copy(update={"on_bad_rows": "skip"}))
    col = resolved.columns.user
    table = ingest.read(roles={"data.columns.user": col})
    return np.asarray(clean_ids(table.df[col]).dropna().unique(), dtype=object)


def parse_as_of(as_of: str) -> int:
    """``--as-of`` as UTC nanoseconds (a time without a zone is UTC).

    >>> parse_as_of("2024-01-02")
    1704153600000000000
    >>> parse_as_of("next tuesday")
    Traceback (most recent call last):
    evtlm.errors.DataError: --as-of 'next tuesday' is not a time, evtlm predict, give an ISO time such as 2024-01-31 or 2024-01-31T18:00:00+08:00
    """
    try:
        stamp = pd.Timestamp(as_of)
    except (ValueError, TypeError, OverflowError) as exc:  # pandas' DateParseError is a ValueError
        raise DataError(f"--as-of {as_of!r} is not a time", where="evtlm predict",
                        fix="give an ISO time such as 2024-01-31 or 2024-01-31T18:00:00+08:00") from exc
    if stamp is pd.NaT:
        raise DataError(f"--as-of {as_of!r} is not a time", where="evtlm predict", fix="give an ISO time such as 2024-01-31")
    return int((stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).value)


# ------------------------------------------------------------------------------------ writing
class RecordWriter:
    """JSONL (one object per line) or CSV (flat columns) records, appended chunk by chunk.

    Written under a temporary name beside ``path`` and renamed onto it by ``close(commit=True)``:
    a run that fails or is killed half-way never leaves a prefix of the predictions that reads
    like a whole file (nor replaces an older complete one).
    """

    def __init__(self, path: Path, task: str, top_k: int, actions: list[str] | None, calibrated: bool = False) -> None:
        from evtlm.fsio import TMP_PREFIX

        self.path, self.task, self.csv = path, task, path.suffix.lower() == ".csv"
        self.tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
        with writing(path, "writing the predictions (--out)"):
            path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = self.tmp.open("w", encoding="utf-8", newline="" if self.csv else None)
        if self.csv:
            if task == "purchase":
                cols = ["p_purchase", *(["p_raw"] if calibrated else []), "answer"]
            elif task == "next_action":
                cols = ["answer"] + [f"p_{a}" for a in actions or []]
            else:
                cols = [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("item", "score")]
            self.columns = ["user_id", *cols, "error"]
            self.writer = csv.DictWriter(self.handle, fieldnames=self.columns)
            self.writer.writeheader()

    def write(self, records: list[dict[str, Any]]) -> None:
        with writing(self.path, "writing the predictions (--out)"):  # a full disk names the output file
            self._write(records)

    def _write(self, records: list[dict[str, Any]]) -> None:
        if not self.csv:
            self.handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            return
        for r in records:
            flat = {k: v for k, v in r.items() if k not in ("probs", "items")}
            for action, p in r.get("probs", {}).items():
                flat[f"p_{action}"] = p
            for i, it in enumerate(r.get("items", []), start=1):
                flat[f"item_{i}"], flat[f"score_{i}"] = it["item_id"], it["score"]
            self.writer.writerow(flat)

    def close(self, commit: bool = True) -> None:
        """Finish the file: flushed and renamed into place (``commit``), or deleted."""
        if not commit:
            self.handle.close()
            self.tmp.unlink(missing_ok=True)
            return
        with writing(self.path, "writing the predictions (--out)"):
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.replace(self.tmp, self.path)


def _decision_offsets(run_dir: Path) -> np.ndarray | None:
    """next_action: the decision rule `evtlm evaluate` fitted on validation (``decision.json``)."""
    path = run_dir / DECISION_FILE
    return np.asarray(json.loads(path.read_text())["offsets"], dtype=np.float64) if path.is_file() else None


def _stream_records(model, part, catalog, recipe, tokenizer, space, task, k, actions, item_ids, batch_size, offsets,
                    calibrator=None, cutoff=None):
    """Records of one chunk of users for a stream model: one window each, read after the last event
    (purchase: its features as of ``cutoff``, the prediction time)."""
    from evtlm.data.stream import now_windows
    from evtlm.train.stream_model import stream_predictions

    now = now_windows(part, catalog, recipe, tokenizer, space, cutoff_ns=cutoff)
    bs = batch_size or recipe.decode.batch_size
    ok = now.ok.tolist()
    users = [now.user_ids[i] for i in ok]
    if not ok:
        result = (np.zeros((0, k), int), np.zeros((0, k))) if task == "next_item" else np.zeros((0, len(space)))
    elif task == "next_item":
        result = stream_predictions(model, now.dataset, now.ok, top_k=k, batch_size=bs,
                                    exclude_history=recipe.decode.exclude_history_items)
    else:
        result = stream_predictions(model, now.dataset, now.ok, batch_size=bs)
        if task == "purchase":
            result = result[:, space.index(" yes")]
    good = dict(zip(ok, _records(task, users, result, actions, item_ids, offsets, calibrator)))
    return [good[i] if i in good else {"user_id": now.user_ids[i], "error": now.errors[i]} for i in range(len(now.user_ids))]


def _prob(p: float) -> float:
    """A probability as written: 6 significant digits of p, or of 1 - p above 0.5. Rounding to 6
    decimals instead printed 1.2142e-4 as 1.21e-4 (a log-loss error of 0.0035 on that example)
    and anything below 5e-7 as 0.

    >>> _prob(0.000121423456), _prob(0.5), _prob(0.99998765432), _prob(3e-9)
    (0.000121423, 0.5, 0.9999876543, 3e-09)
    """
    p = float(p)
    return 1.0 - float(f"{1.0 - p:.6g}") if p > 0.5 else float(f"{p:.6g}")


def _records(task: str, users: list[str], out: Any, actions: list[str] | None, item_ids: list[str] | None,
             offsets: np.ndarray | None = None, calibrator: Any = None) -> list[dict]:
    """Prediction records of one chunk's decodable users. next_action answers follow the decision
    rule fitted on validation when the run has one (the probabilities are the model's own);
    purchase probabilities go through the run's calibrator when it has one (`evtlm.evaluate.calibration`),
    the raw softmax kept beside them as ``p_raw``."""
    if task == "purchase":  # the answer follows the probability as written (0.4999999 is written 0.5: "yes")
        if calibrator is None or calibrator.skipped is not None:
            return [{"user_id": u, "p_purchase": (q := _prob(p)), "answer": "yes" if q >= 0.5 else "no"}
                    for u, p in zip(users, out)]
        cal = calibrator.apply(out) if len(out) else []
        return [{"user_id": u, "p_purchase": (q := _prob(c)), "p_raw": _prob(p),
                 "answer": "yes" if q >= 0.5 else "no"} for u, p, c in zip(users, out, cal)]
    if task == "next_action":
        from evtlm.evaluate.metrics import apply_offsets

        pick = apply_offsets(out, offsets) if offsets is not None and len(out) else np.argmax(out, axis=1) if len(out) else []
        return [{"user_id": u, "answer": actions[int(c)],
                 "probs": {a: _prob(q) for a, q in zip(actions, p)}} for u, p, c in zip(users, out, pick)]
    idx, scores = out
    return [{"user_id": u, "items": [{"item_id": item_ids[i], "score": round(float(s), 4)}
                                     for i, s in zip(row, srow) if i >= 0 and math.isfinite(s)]}
            for u, row, srow in zip(users, idx, scores)]


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
    offsets = _decision_offsets(run_dir) if task == "next_action" else None
    calibrator = None
    if task == "purchase":
        from evtlm.evaluate.calibration import load_calibration

        calibrator = load_calibration(run_dir)  # None until `evtlm evaluate` (or finetune) wrote calibration.json
    k = min(top_k or recipe.decode.top_k, len(space))
    actions = action_names(space, recipe.verbalize) if task == "next_action" else None
    item_ids = run_label_items(run_dir, space, log.events, log.catalog, recipe.verbalize) if task == "next_item" else None
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
            if task == "next_item":
                exclude = history_exclusions([now.history_items[i] for i in ok], item_index) \
                    if recipe.decode.exclude_history_items else None
                result = decoder.items(prompts, k, exclude, batch_size) if prompts else (np.zeros((0, k), int), np.zeros((0, k)))
            else:
                probs = decoder.probs(prompts, batch_size) if prompts else np.zeros((0, len(space)))
                result = probs[:, space.index(" yes")] if task == "purchase" else probs
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
