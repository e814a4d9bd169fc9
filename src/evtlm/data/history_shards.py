"""A log split by user into shards, read one shard at a time: what the baselines fit and predict
from when the whole event table should not be in memory (`evtlm.data.shard_prepare`, 100M events).

Every baseline that reads only each example's own user's events, plus statistics that add up
over users, gives the same answers from shards as from the whole log (users never straddle two
shards). `evtlm.evaluate.baselines.Baseline.fit` and ``predict`` accept a `ShardedEvents` in place of the
events: each shard's examples are handled with that shard's `evtlm.data.history.HistoryIndex`, and
the pieces are put back in the examples' order. Only one shard's index is held at a time, so
memory follows the shard, not the log.

Under several processes each reads only its own shards (``mine``: shard k belongs to process
k % world, as in training) and ``gather`` (`evtlm.sharded.gather_parts`) hands every process
the pieces of all of them: every process must then make the same calls, and each gets the whole
result.

Which shard an example belongs to is a column of the examples (``shard``, as
`evtlm.data.shard_folder.ShardIndex` lays them out), not a hash recomputed here: the partition hashed
the raw ids, which need not survive a cast to string.

>>> ev = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["a", "b", "a"], "action": ["view", "cart", "view"],
...                    "timestamp": pd.to_datetime([1, 2, 1], unit="D", utc=True)})
>>> sharded = ShardedEvents(2, lambda k: ev[ev["user_id"] == ("u", "v")[k]])
>>> ex = pd.DataFrame({"user_id": ["v", "u"], "shard": [1, 0]})
>>> [(k, pos.tolist()) for k, pos in sharded.groups(ex)]
[(0, [1]), (1, [0])]
>>> sharded.index(1).n, sharded.index(1).n, sharded.loads   # shard 1: user v's one event, read once and kept
(1, 1, 1)
>>> put_back([(np.array([1]), np.array([10.0])), (np.array([0]), np.array([20.0]))], 2).tolist()
[20.0, 10.0]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from evtlm.errors import DataError
from evtlm.ingest.events import EventLog
from evtlm.data.history_index import HistoryIndex

__all__ = ["ShardedEvents", "put_back", "SHARD"]

SHARD = "shard"  # the examples' column naming their shard


class ShardedEvents:
    """``shards`` disjoint sets of users; ``load(k)`` gives shard k's events (a DataFrame or an
    `evtlm.ingest.events.EventLog`). The index of the shard read last is kept, so consecutive calls
    on one shard read it once; ``loads`` counts the reads. ``ranks``: this process's
    ``(rank, world)``; ``gather(piece)`` returns every process's piece (one process: ``[piece]``)."""

    def __init__(self, shards: int, load: Callable[[int], pd.DataFrame | EventLog], *,
                 ranks: tuple[int, int] = (0, 1), gather: Callable[[object], list] | None = None) -> None:
        self.shards, self._load = int(shards), load
        rank, world = ranks
        self.mine = list(range(rank, self.shards, world))
        self.gather = gather or (lambda piece: [piece])
        self._kept: tuple[int, HistoryIndex] | None = None
        self.loads = 0

    def __repr__(self) -> str:
        return f"ShardedEvents(shards={self.shards})"

    def index(self, k: int) -> HistoryIndex:
        """Shard ``k``'s `HistoryIndex` (the one kept, or read now in its place)."""
        if self._kept is None or self._kept[0] != k:
            self._kept = None  # the old one goes before the new one is built
            self._kept = (k, HistoryIndex(self._load(k)))
            self.loads += 1
        return self._kept[1]

    def any_index(self) -> HistoryIndex:
        """An index of this process's (for calls on no examples: every shard gives the same empty answer)."""
        return self.index(self._kept[0] if self._kept is not None else (self.mine or [0])[0])

    def groups(self, examples: pd.DataFrame) -> Iterator[tuple[int, np.ndarray]]:
        """``(k, positions)``: the rows of ``examples`` in shard k, for this process's shards, each
        once, starting with the one kept (the order of the pieces never changes a result:
        `put_back` places them)."""
        if SHARD not in examples:
            raise DataError("the examples have no 'shard' column: which shard holds each user is unknown",
                            where="ShardedEvents", fix="use the example tables of the tokenized shards (evtlm.data.shard_prepare)")
        shard = examples[SHARD].to_numpy(np.int64)
        if len(shard) and (shard.min() < 0 or shard.max() >= self.shards):
            raise DataError(f"shard numbers outside 0..{self.shards - 1}", where="examples.shard",
                            fix="the examples and the events come from different partitions")
        mine = set(self.mine)
        present = [k for k in np.unique(shard).tolist() if k in mine]
        if self._kept is not None and self._kept[0] in present:
            i = present.index(self._kept[0])
            present = present[i:] + present[:i]
        for k in present:
            yield k, np.flatnonzero(shard == k)


def put_back(pieces: list[tuple[np.ndarray, np.ndarray | pd.DataFrame]], n: int) -> np.ndarray | pd.DataFrame:
    """Row-aligned ``(positions, rows)`` pieces -> one array (or frame) of ``n`` rows in position
    order. Every position must be given exactly once."""
    if not pieces:
        raise DataError("no examples to put back", where="ShardedEvents")
    pos = np.concatenate([p for p, _ in pieces])
    if len(pos) != n or len(np.unique(pos)) != n:
        raise DataError(f"{len(pos)} rows for {n} positions", where="ShardedEvents.put_back",
                        fix="every example must belong to exactly one shard")
    order = np.argsort(pos, kind="stable")
    first = pieces[0][1]
    if isinstance(first, pd.DataFrame):
        return pd.concat([rows for _, rows in pieces], ignore_index=True).iloc[order].reset_index(drop=True)
    return np.concatenate([np.asarray(rows) for _, rows in pieces])[order]
