"""The data report (``data_report.json``): `build_report` for one prepared log, from per-split figures
kept in a form that adds up over shards of users (`split_parts`, `merge_split_parts`,
`split_summary`, `percentile_of_counts`), so tokenized shards (`evtlm.data.shard_prepare`) report
exactly what the whole log would. It only summarises index tables and the task's results: it must
not read events, tokenize or write files.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from evtlm.ingest.events import EventLog
from evtlm.recipe import Recipe
from evtlm.tasks.splits import SPLITS
from evtlm.tasks import Task, TaskContext, resolve_primary
from evtlm.text.tokenization import TokenizerInfo


def split_parts(ix: pd.DataFrame) -> dict[str, Any]:
    """What one split's report entry is computed from, in a form that adds up over shards of
    users (`merge_split_parts`): every example's token count as a histogram, its users, the full
    count of every answer, the examples whose history was cut."""
    return {"tokens": np.bincount(ix["n_tokens"].to_numpy(np.int64), minlength=1), "users": int(ix["user_id"].nunique()),
            "labels": ix["target"].astype(str).str.strip().value_counts(),
            "truncated": int((ix["kept_start"] > ix["hist_start"]).sum())}


def merge_split_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """`split_parts` of disjoint sets of users (shards) -> those of their union: exact.

    >>> a = split_parts(pd.DataFrame({"n_tokens": [3, 5], "user_id": ["u", "u"], "target": ["x", "y"],
    ...                               "kept_start": [0, 1], "hist_start": [0, 0]}))
    >>> m = merge_split_parts([a, a])
    >>> m["tokens"].tolist(), m["users"], m["labels"].to_dict(), m["truncated"]
    ([0, 0, 0, 2, 0, 2], 2, {'x': 2, 'y': 2}, 2)
    """
    width = max(len(p["tokens"]) for p in parts)
    tokens = np.zeros(width, dtype=np.int64)
    for p in parts:
        tokens[: len(p["tokens"])] += p["tokens"]
    labels = pd.concat([p["labels"] for p in parts]).groupby(level=0, sort=False).sum() if parts else pd.Series(dtype=np.int64)
    return {"tokens": tokens, "users": sum(p["users"] for p in parts), "labels": labels,
            "truncated": sum(p["truncated"] for p in parts)}


def percentile_of_counts(counts: np.ndarray, q: float) -> float:
    """``np.percentile`` (linear interpolation) of the integers whose histogram is ``counts``.

    >>> x = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    >>> [bool(percentile_of_counts(np.bincount(x), q) == np.percentile(x, q)) for q in (50, 90, 99)]
    [True, True, True]
    """
    n = int(counts.sum())
    if n == 0:
        return 0.0
    ends = np.cumsum(counts)
    pos = (n - 1) * (q / 100.0)  # as numpy computes it, to the last bit
    lo = int(np.floor(pos))
    a, b = (float(np.searchsorted(ends, i, side="right")) for i in (lo, min(lo + 1, n - 1)))
    t = pos - lo
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)  # numpy's own lerp, both halves


def split_summary(parts: dict[str, Any], *, stream_rows: int | None = None, labels: bool = True) -> dict[str, Any]:
    """One split's entry of the data report's ``splits``, from its `split_parts`. ``stream_rows``:
    pretraining's ``task.max_tokens``, whose rows are chunks of the streams; ``labels``: False
    where answers are not a label (pretraining)."""
    tokens = parts["tokens"]
    values = np.arange(len(tokens))
    n = int(tokens.sum())
    # ties in the distribution by label: the same order from a whole log as from its shards
    counts = parts["labels"].sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    dist = {str(k): int(v) for k, v in counts.head(20).items()}
    if len(counts) > 20:
        dist["(other)"] = int(counts.iloc[20:].sum())
    out = {
        "examples": n, "users": int(parts["users"]),
        "label_distribution": dist if labels else {}, "distinct_labels": int(len(counts)) if labels else 0,
        "tokens": {f"p{q}": percentile_of_counts(tokens, q) for q in (50, 90, 99)}
        | {"max": int(values[tokens > 0].max()) if n else 0, "total": int((values * tokens).sum())},
        "truncated": int(parts["truncated"]),
    }
    if stream_rows:  # pretrain: rows are max_tokens chunks of the streams
        out |= {"streams": n, "examples": int((np.maximum(1, -(-values // stream_rows)) * tokens).sum())}
    out["truncation_rate"] = parts["truncated"] / n if n else 0.0
    return out


def build_report(recipe: Recipe, task: Task, log: EventLog, exset, index: dict[str, pd.DataFrame],
                 info: TokenizerInfo, ctx: TaskContext) -> dict[str, Any]:
    """The ``data_report.json`` content (see `evtlm.cli.prepare` for how it prints)."""
    per = {split: split_summary(split_parts(ix), stream_rows=recipe.task.max_tokens if task.stream else None,
                                labels=not task.stream) for split, ix in index.items()}
    return {
        "events": log.report.to_dict(),
        "task": {"name": task.name, "metrics": list(task.metric_names), "primary_metric": resolve_primary(task.name, recipe.eval.k)[0],
                 "label_space_size": len(exset.label_space), "max_tokens": recipe.task.max_tokens,
                 "examples_per_user": {"cap": recipe.task.examples_per_user, "dropped": {s: ctx.capped.get(s, 0) for s in SPLITS}},
                 **{k: v for k, v in exset.info.items() if k != "cold_items"}},
        "split": {"method": recipe.split.method, "windows": ctx.windows.to_dict() if ctx.windows else None},
        "tokenizer": info.to_dict(),
        "splits": per,
        "examples": {s: per[s]["examples"] for s in SPLITS},
        "cold_items": exset.info.get("cold_items"),
        "notes": exset.notes,
    }
