"""What the data stage hands on, and its cache-entry form: `Prepared` (what training, evaluation and
the baselines read), `LogFacts` (what one shard of a log cannot know alone) and how a `Prepared`
is saved into a data-cache entry (`evtlm.data.cache`) and read back, memory-mapped (`_save`,
`_load`, `_load_cached`; `evtlm.data.prepare` writes the split files and decides the key). It must
not build examples, tokenize or choose cache keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from evtlm.data import cache as datacache
from evtlm.data.example_frames import TextExamples
from evtlm.ingest.events import EventLog
from evtlm.recipe import Recipe
from evtlm.tasks.splits import SPLITS, TimeWindows
from evtlm.tasks import Task
from evtlm.text.tokenization import TokenizerInfo

if TYPE_CHECKING:
    from datasets import DatasetDict
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class LogFacts:
    """What one shard of a log cannot know alone (`evtlm.data.shard_prepare` computes it over every
    shard): the whole log's split windows, its label space and its items. `prepare` given these
    builds a shard's examples exactly as the whole log's would be built for the same users."""

    windows: TimeWindows | None  # None under leave_one_out
    label_space: list[str] | None  # None: the task's label space does not depend on the data
    items: list[str]  # every item id of the log, sorted: the item tokens, in `item_vocabulary` order

    def key(self) -> dict[str, Any]:
        """A fingerprint for the data cache key (the label space and items hashed)."""
        import hashlib

        def digest(values):
            return None if values is None else hashlib.sha256("\x1f".join(values).encode()).hexdigest()[:16]

        return {"windows": self.windows.to_dict() if self.windows else None,
                "label_space": digest(self.label_space), "items": digest(self.items)}


@dataclass
class Prepared:
    """Everything training, evaluation and baselines need from the data stage."""

    datasets: DatasetDict
    label_space: list[str]
    report: dict[str, Any]  # -> data_report.json
    tokenizer: PreTrainedTokenizerBase
    tokenizer_info: TokenizerInfo
    events: EventLog
    task: Task
    index: dict[str, pd.DataFrame]  # per split: the task's example table + kept_start, example_id, n_tokens
    train_texts: list[str]  # verbalized training-window stream of each user
    examples: Mapping[str, pd.DataFrame] = field(default_factory=dict)  # text examples (lazy)
    from_cache: bool = False
    cache_path: Path | None = None

    def write_report(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.report, indent=2, default=str) + "\n")


def _load_cached(path: Path, recipe: Recipe, task: Task, tokenizer, info: TokenizerInfo | None) -> Prepared | None:
    """A committed cache entry, or None (and the entry discarded) when its files cannot be read:
    a damaged entry is rebuilt, never trusted and never fatal."""
    try:
        return _load(path, recipe, task, tokenizer, info)
    except (OSError, ValueError, KeyError, pa.ArrowException) as exc:  # ArrowInvalid, JSONDecodeError are ValueErrors
        import warnings

        warnings.warn(f"the data cache entry {path} is damaged ({type(exc).__name__}: {exc}); rebuilding it", stacklevel=3)
        datacache.discard(path)
        return None


def _save(path: Path, p: Prepared) -> None:
    for split, frame in p.index.items():
        frame.to_parquet(path / f"index_{split}.parquet", index=False)
    pa.parquet.write_table(pa.table({"text": pa.array(p.train_texts, pa.large_string())}), path / "train_texts.parquet")
    datacache.save_log(p.events, path)
    if p.tokenizer_info.source == "scratch":
        p.tokenizer.save_pretrained(str(path / "tokenizer"))
    meta = {"label_space": p.label_space, "report": p.report, "tokenizer_info": p.tokenizer_info.to_dict()}
    (path / "meta.json").write_text(json.dumps(meta, default=str))


def _load(path: Path, recipe: Recipe, task: Task, tokenizer, info: TokenizerInfo | None, from_cache: bool = True) -> Prepared:
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    meta = json.loads((path / "meta.json").read_text())
    if tokenizer is None:  # a scratch tokenizer travels with the cache entry
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path / "tokenizer"))
    info = info or TokenizerInfo(**meta["tokenizer_info"])
    prepared = Prepared(
        datasets=DatasetDict({s: Dataset.from_file(str(path / f"{s}.arrow")) for s in SPLITS}),
        label_space=meta["label_space"], report=meta["report"], tokenizer=tokenizer, tokenizer_info=info,
        events=datacache.load_log(path), task=task,
        index={s: pd.read_parquet(path / f"index_{s}.parquet") for s in SPLITS},
        train_texts=pq.read_table(path / "train_texts.parquet").column("text").to_pylist(),
        from_cache=from_cache, cache_path=path,
    )
    prepared.examples = TextExamples(prepared, recipe)
    return prepared
