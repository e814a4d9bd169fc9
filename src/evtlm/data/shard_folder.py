"""A committed folder of tokenized shards, as `evtlm.data.shard_prepare.prepare_shards` writes it, and
how it is read: `ShardedData` (a process's shards memory-mapped; the `Prepared` finetune trains
on), `ShardIndex` and `ShardedPrepared` (index, events and training text read on first access).
It only reads a committed folder: it must not prepare, tokenize or write one. Layout::

    <cache>/shards/<key>/
      manifest.json     shards; examples, windows and tokens per split and shard; label space; facts;
                        the data report's per-split figures over every shard, exact (`evtlm.data.data_report.split_parts`)
      tokenizer/        the tokenizer of every shard (item tokens included)
      shard-00000/      a prepared entry of that shard's users (`evtlm.data.prepare`: train.arrow, ...)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from evtlm.data.example_frames import SplitFrames
from evtlm.data.history_shards import SHARD, ShardedEvents
from evtlm.data.prepared import Prepared
from evtlm.data.task_defaults import text_recipe
from evtlm.errors import DataError
from evtlm.ingest.events import EventLog
from evtlm.recipe import Recipe
from evtlm.tasks.splits import SPLITS

if TYPE_CHECKING:
    from datasets import Dataset

MANIFEST = "manifest.json"


@dataclass
class ShardedData:
    """A committed folder of tokenized shards (see the module doc)."""

    path: Path
    manifest: dict[str, Any]
    tokenizer: Any
    from_cache: bool = False

    @property
    def shards(self) -> int:
        return int(self.manifest["shards"])

    @property
    def label_space(self) -> list[str]:
        return list(self.manifest["label_space"])

    def mine(self, ranks: tuple[int, int] = (0, 1)) -> list[int]:
        """The shards of process ``rank`` of ``world``: k % world == rank (as `evtlm.ingest.partition`)."""
        rank, world = ranks
        return list(range(rank, self.shards, world))

    def dataset(self, split: str, ranks: tuple[int, int] = (0, 1)) -> Dataset:
        """``split`` of this process's shards, memory-mapped (nothing is read until a row is)."""
        from datasets import Dataset, concatenate_datasets

        parts = [Dataset.from_file(str(self.path / _shard_dir(k) / f"{split}.arrow")) for k in self.mine(ranks)]
        if not parts:
            raise DataError(f"process {ranks[0]} of {ranks[1]} has no shard: the partition has {self.shards}",
                            where=str(self.path), fix=f"partition into at least {ranks[1]} shards (evtlm partition --shards)")
        return parts[0] if len(parts) == 1 else concatenate_datasets(parts)

    def prepared(self, recipe: Recipe, ranks: tuple[int, int] = (0, 1)) -> Prepared:
        """What `evtlm.cli.finetune` trains and evaluates on: the training split of this process's
        shards only; validation and test of every shard (evaluation is shared out by
        `evtlm.sharded`). The index of every shard (positions shifted onto the shards' events laid
        end to end), those events and the training text (shard 0's, for a scratch base's
        pretraining) are read only when first asked for: a process that only trains holds its
        memory-mapped shards and nothing else."""
        from datasets import DatasetDict

        from evtlm.data.example_frames import TextExamples
        from evtlm.tasks import get_task
        from evtlm.text.tokenization import TokenizerInfo

        recipe = text_recipe(recipe)
        meta = json.loads((self.path / _shard_dir(0) / "meta.json").read_text())
        datasets = DatasetDict({"train": self.dataset("train", ranks), "valid": self.dataset("valid"), "test": self.dataset("test")})
        out = ShardedPrepared(datasets=datasets, label_space=self.label_space, report=self._report(meta["report"]),
                              tokenizer=self.tokenizer, tokenizer_info=TokenizerInfo(**meta["tokenizer_info"]), events=None,
                              task=get_task(recipe.task.name), index=ShardIndex(self), train_texts=[],
                              from_cache=self.from_cache, cache_path=self.path)
        out._sharded = self
        out.examples = TextExamples(out, recipe)
        return out

    def _report(self, first: dict[str, Any]) -> dict[str, Any]:
        """The data report: the partition's events, the examples of every shard, how it was prepared."""
        from evtlm.ingest.partition import read_partition

        report = dict(first)
        report["events"] = read_partition(self.manifest["partition"]).report.to_dict()
        report["examples"] = {s: int(sum(self.manifest["examples"][s])) for s in SPLITS}
        report["splits"] = self.manifest["splits"]
        report["task"] = {**report["task"], "examples_per_user": {**report["task"]["examples_per_user"],
                                                                  "dropped": self.manifest["examples_per_user_dropped"]}}
        report["cold_items"] = self.manifest["cold_items"]
        report["shards"] = {"shards": self.shards, "path": str(self.path), "tokenizer": self.manifest["tokenizer"],
                            "windows": {s: int(sum(self.manifest["windows"][s])) for s in SPLITS}}
        return report

    def shard(self, k: int, recipe: Recipe) -> Prepared:
        """Shard ``k`` as an `evtlm.data.prepare.Prepared` (its events, index, datasets: that shard's users)."""
        from evtlm.data.prepared import _load
        from evtlm.tasks import get_task

        recipe = text_recipe(recipe)
        return _load(self.path / _shard_dir(k), recipe, get_task(recipe.task.name), self.tokenizer, None)


class ShardIndex(SplitFrames):
    """Per split, every shard's example table end to end, read on first access. Event positions
    (``hist_start``, ``hist_stop``, ``target_pos``, ``kept_start``) and ``user_code`` are
    shifted by the events and users of the shards before, so they index the shards' events laid
    end to end (`ShardedPrepared.events`); ``example_id`` already runs on across shards; ``shard``
    names each example's shard."""

    POSITIONS = ("hist_start", "hist_stop", "kept_start")

    def __init__(self, data: ShardedData) -> None:
        super().__init__()
        self._data = data

    def _split(self, split: str) -> pd.DataFrame:
        m = self._data.manifest
        ev_off, user_off = np.r_[0, np.cumsum(m["events"])], np.r_[0, np.cumsum(m["users"])]
        parts = []
        for k in range(self._data.shards):
            ix = pd.read_parquet(self._data.path / _shard_dir(k) / f"index_{split}.parquet")
            for col in self.POSITIONS:
                ix[col] = ix[col] + ev_off[k]
            if "target_pos" in ix:  # -1: no target event (purchase)
                ix["target_pos"] = np.where(ix["target_pos"] >= 0, ix["target_pos"] + ev_off[k], ix["target_pos"])
            ix["user_code"] = ix["user_code"] + user_off[k]
            ix[SHARD] = np.int32(k)  # where each example's user lives (evtlm.data.history_shards)
            parts.append(ix)
        return pd.concat(parts, ignore_index=True)


class ShardedPrepared(Prepared):
    """A `Prepared` over tokenized shards (`ShardedData.prepared`): ``events`` (every shard's, end
    to end, as `evtlm.ingest.partition.Partition.event_log` lays them) and ``train_texts`` (shard 0's)
    are read on first access."""

    _sharded: ShardedData | None = None
    _events_cache: EventLog | None = None

    @property  # type: ignore[override]
    def events(self) -> EventLog:
        if self._events_cache is None and self._sharded is not None:
            from evtlm.ingest.partition import read_partition

            self._events_cache = read_partition(self._sharded.manifest["partition"]).event_log()
        return self._events_cache

    @events.setter
    def events(self, value) -> None:
        self._events_cache = value

    def sharded_events(self) -> ShardedEvents:
        """The events shard by shard, one in memory at a time (`evtlm.data.history_shards`): what the
        purchase and next_action baselines fit and predict from, with the whole log's results.
        Under several processes each reads its own shards and every process gets every piece."""
        from evtlm.ingest.partition import read_partition
        from evtlm.sharded import gather_parts, rank_world

        part = read_partition(self._sharded.manifest["partition"])
        return ShardedEvents(part.shards, lambda k: EventLog(part.shard(k), part.catalog, part.report),
                             ranks=rank_world(), gather=gather_parts)

    @property  # type: ignore[override]
    def train_texts(self) -> list[str]:
        import pyarrow.parquet as pq

        if self._sharded is None:
            return []
        return pq.read_table(self._sharded.path / _shard_dir(0) / "train_texts.parquet").column("text").to_pylist()

    @train_texts.setter
    def train_texts(self, value) -> None:  # the dataclass sets it; the texts stay on disk
        pass


def _shard_dir(k: int) -> str:
    return f"shard-{k:05d}"


def _label_space_of(folder: Path) -> list[str]:
    return json.loads((folder / _shard_dir(0) / "meta.json").read_text())["label_space"]


def _open(path: Path, from_cache: bool) -> ShardedData:
    from transformers import PreTrainedTokenizerFast

    manifest = json.loads((path / MANIFEST).read_text())
    return ShardedData(path, manifest, PreTrainedTokenizerFast.from_pretrained(str(path / "tokenizer")), from_cache)
