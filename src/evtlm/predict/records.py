"""The prediction records and their file: one record per user of a chunk's decoded output
(`_records`, probabilities as written by `_prob`), appended as JSONL or CSV by `RecordWriter`, which
renames the file into place only once every user is written. It formats what it is given: no model,
no decoding, and no file but the predictions (``--out``).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from evtlm.fsio import writing


# ------------------------------------------------------------------------------------ writing
class RecordWriter:
    """JSONL (one object per line) or CSV (flat columns) records, appended chunk by chunk.

    Written under a temporary name beside ``path`` and renamed onto it by ``close(commit=True)``:
    a run that fails or is killed half-way never leaves a prefix of the predictions that reads
    like a whole file (nor replaces an older complete one).
    """

    def __init__(self, path: Path, task: str, top_k: int, actions: list[str] | None, calibrated: bool = False) -> None:
        from evtlm.fsio import TMP_PREFIX

        from evtlm.tasks import answer_of

        self.path, self.task, self.csv = path, task, path.suffix.lower() == ".csv"
        kind = answer_of(task)
        self.tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
        with writing(path, "writing the predictions (--out)"):
            path.parent.mkdir(parents=True, exist_ok=True)
            self.handle = self.tmp.open("w", encoding="utf-8", newline="" if self.csv else None)
        if self.csv:
            if kind == "binary":
                cols = [probability_field(task), *(["p_raw"] if calibrated else []), "answer"]
            elif kind == "classes":
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


def probability_field(task: str) -> str:
    """The key of P(yes) in a binary task's records: the task's own (`Task.probability_field`,
    purchase: ``p_purchase``), else ``p_yes``."""
    from evtlm.tasks import TASKS

    return getattr(TASKS.get(task), "probability_field", "p_yes")


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
    from evtlm.tasks import answer_of

    kind = answer_of(task)
    if kind == "binary":  # the answer follows the probability as written (0.4999999 is written 0.5: "yes")
        field = probability_field(task)
        if calibrator is None or calibrator.skipped is not None:
            return [{"user_id": u, field: (q := _prob(p)), "answer": "yes" if q >= 0.5 else "no"}
                    for u, p in zip(users, out)]
        cal = calibrator.apply(out) if len(out) else []
        return [{"user_id": u, field: (q := _prob(c)), "p_raw": _prob(p),
                 "answer": "yes" if q >= 0.5 else "no"} for u, p, c in zip(users, out, cal)]
    if kind == "classes":
        from evtlm.evaluate.metrics import apply_offsets

        pick = apply_offsets(out, offsets) if offsets is not None and len(out) else np.argmax(out, axis=1) if len(out) else []
        return [{"user_id": u, "answer": actions[int(c)],
                 "probs": {a: _prob(q) for a, q in zip(actions, p)}} for u, p, c in zip(users, out, pick)]
    idx, scores = out
    return [{"user_id": u, "items": [{"item_id": item_ids[i], "score": round(float(s), 4)}
                                     for i, s in zip(row, srow) if i >= 0 and math.isfinite(s)]}
            for u, row, srow in zip(users, idx, scores)]
