"""Per-split views of a prepared log's examples, each built on first access: `SplitFrames` (the lazy
mapping), `ExampleLabels` / `example_labels` (what evaluation and the baselines read: the label
columns of the index tables, no event text), `TextExamples` (the prompts as text) and
`history_items`. They read a `Prepared` (`evtlm.data.prepared`) and its index tables; they must not
tokenize, write the data cache or change the datasets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from evtlm.ingest.events import EventLog
from evtlm.recipe import Recipe
from evtlm.tasks.splits import SPLITS

if TYPE_CHECKING:
    from evtlm.data.prepared import Prepared


class SplitFrames(Mapping[str, pd.DataFrame]):
    """One DataFrame per split (``train``, ``valid``, ``test``), each built by ``_split(name)`` on
    first access and kept: what is never asked for is never built."""

    def __init__(self) -> None:
        self._frames: dict[str, pd.DataFrame] = {}

    def __iter__(self) -> Iterator[str]:
        return iter(SPLITS)

    def __len__(self) -> int:
        return len(SPLITS)

    def __getitem__(self, split: str) -> pd.DataFrame:
        if split not in SPLITS:
            raise KeyError(split)
        if split not in self._frames:
            self._frames[split] = self._split(split)
        return self._frames[split]

    def _split(self, split: str) -> pd.DataFrame:
        raise NotImplementedError


def example_labels(ix: pd.DataFrame) -> pd.DataFrame:
    """What the metrics and the baselines read of each example of an index table (`Prepared.index`):
    ``example_id, user_id, target, label, label_index, label_time`` (and ``shard``, over shards). No event text is built: a
    prompt is a string per event of the history, more than a machine holds at 100M events, and
    evaluation never reads it (the model reads token ids, the baselines the event table)."""
    out = pd.DataFrame({
        "example_id": ix["example_id"],
        "user_id": ix["user_id"].astype("string"),
        "target": ix["target"],
        "label": ix["label"],
        "label_index": ix["label_index"],
        "label_time": pd.to_datetime(ix["label_time"].to_numpy(), utc=True),
    })
    if "shard" in ix:  # tokenized shards: where each user's events are (evtlm.data.history_shards)
        out["shard"] = ix["shard"].to_numpy()
    return out


def history_items(events: EventLog, ix: pd.DataFrame) -> list[list[str]]:
    """The item ids of each example's full, untruncated history (rows ``hist_start:hist_stop`` of
    ``events``): what ``decode.exclude_history_items`` masks."""
    items = events.events["item_id"].to_numpy(dtype=object, na_value=None)
    return [[i for i in items[lo:hi] if i is not None] for lo, hi in zip(ix["hist_start"].to_numpy(), ix["hist_stop"].to_numpy())]


class ExampleLabels(SplitFrames):
    """Per split, `example_labels` of ``index[split]``, built on first access: evaluation's view
    of the examples (`evtlm.evaluate.harness`), which reads the index tables only, never the events."""

    def __init__(self, index: Mapping[str, pd.DataFrame]) -> None:
        super().__init__()
        self._index = index

    def _split(self, split: str) -> pd.DataFrame:
        return example_labels(self._index[split])


class TextExamples(SplitFrames):
    """Per split: ``example_id, user_id, prompt, target, label, label_index, label_time,
    history_items, truncated``, built on first access (prompts are strings: costly at scale;
    what evaluation reads is `ExampleLabels`).

    ``prompt`` is the text the model sees (after truncation); ``history_items`` are the items of
    the full, untruncated prompt range, for baselines.
    """

    def __init__(self, prepared: Prepared, recipe: Recipe) -> None:
        super().__init__()
        self._p, self._recipe, self._text = prepared, recipe, None

    def _split(self, split: str) -> pd.DataFrame:
        return self._build(self._p.index[split])

    def _build(self, ix: pd.DataFrame) -> pd.DataFrame:
        from evtlm.text.verbalize import actor_text, verbalize_events

        ev, cfg = self._p.events, self._recipe.verbalize
        if self._text is None:
            self._text = verbalize_events(ev.events, ev.catalog, cfg)
        piece = self._text.piece.to_numpy(dtype=object)
        stand = self._text.standalone.to_numpy(dtype=object)
        users = ev.events["user_id"].to_numpy(dtype=object)
        actors = actor_text(ix["user_id"].astype("string"), cfg).to_numpy(dtype=object)
        a, b, s = (ix[c].to_numpy() for c in ("hist_start", "hist_stop", "kept_start"))
        # the user's first row: pieces before it belong to another user
        first = np.array([s_ == 0 or users[s_ - 1] != users[s_] for s_ in np.minimum(s, len(users) - 1)], dtype=bool)
        prompts = [
            act + ((piece[k] if f else stand[k]) if k < e else "") + "".join(piece[k + 1 : e]) + q
            for act, k, e, f, q in zip(actors, s, b, first, ix["question"].to_numpy(dtype=object))
        ]
        out = example_labels(ix)
        out.insert(2, "prompt", prompts)
        return out.assign(history_items=history_items(ev, ix), truncated=s > a)
