"""From a recipe to tokenized train/valid/test datasets: `prepare`.

Steps: read the events (`evtlm.ingest.presets.load_event_log`), let the task build its examples under
the leakage-safe split (`evtlm.tasks`, `evtlm.tasks.splits`), verbalize every event once
(`evtlm.text.verbalize`), load or train the tokenizer on training text only
(`evtlm.text.tokenization`), and assemble each example's ids from its events' token ids
(`evtlm.text.encode`): prompt + answer + eos with ``labels = -100`` on the prompt, the oldest events
dropped when the budget ``task.max_tokens`` is exceeded. The result is cached on disk
(`evtlm.data.cache`) as memory-mapped Arrow files; a second run with the same inputs loads it.

Dataset rows (`Prepared.datasets`, splits ``train``, ``valid``, ``test``): ``input_ids``,
``labels``, ``prompt_length``, ``label_index`` (-1: answer outside the label space), ``user_id``,
``example_id`` (row of `Prepared.index`; for pretrain, the chunk number).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from evtlm.data import cache as datacache
from evtlm.text.encode import build_event_tokens, chunk_offsets, example_rows, fit_budget, list_array, masked_labels
from evtlm.errors import TaskError
from evtlm.ingest.events import EventLog
from evtlm.fsio import default_cache_dir, writing
from evtlm.recipe import Recipe
from evtlm.tasks.splits import SPLITS, TRAIN, TimeWindows, assert_prompts_before_labels
from evtlm.tasks import Task, TaskContext, get_task, resolve_primary
from evtlm.text.tokenization import (
    TokenizerInfo,
    add_item_tokens,
    ensure_pad,
    load_tokenizer,
    tokenizer_fingerprint,
    try_load_pretrained,
)

if TYPE_CHECKING:
    from datasets import DatasetDict
    from transformers import PreTrainedTokenizerBase

__all__ = ["Prepared", "LogFacts", "SplitFrames", "ExampleLabels", "example_labels", "history_items", "prepare", "text_recipe",
           "item_vocabulary"]


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


def prepare(recipe: Recipe, tokenizer: PreTrainedTokenizerBase | None = None, cache_dir: str | Path | None = None,
            progress: bool = True, *, events: EventLog | None = None, base_dir: str | Path | None = None,
            use_cache: bool = True, facts: LogFacts | None = None, first_example_id: int = 0) -> Prepared:
    """Tokenized examples for ``recipe`` (see the module doc). ``events`` skips reading the data;
    ``facts``: ``events`` are one shard of a larger log, whose windows, label space and items these
    are; ``first_example_id``: that shard's examples are numbered on from the earlier shards'."""
    from tqdm.auto import tqdm

    recipe = text_recipe(recipe)
    task = get_task(recipe.task.name)
    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "datasets"
    bar = tqdm(total=6, desc="prepare", disable=not progress, leave=False)
    # the tokenizer's identity comes first: an unavailable base fails before any work is done
    info: TokenizerInfo | None = None
    if tokenizer is not None:
        ensure_pad(tokenizer, getattr(tokenizer, "name_or_path", "given"))
        info = TokenizerInfo("given", str(getattr(tokenizer, "name_or_path", "")), len(tokenizer))
    else:
        tokenizer, why = try_load_pretrained(recipe.model)
        if tokenizer is None:
            if recipe.model.when_unavailable == "error":
                load_tokenizer(recipe.model, None, root.parent)  # raises the one-line error
            tok_key = f"scratch:{recipe.model.scratch.vocab_size}"
        else:
            info = TokenizerInfo("pretrained", recipe.model.tokenizer or recipe.model.base, len(tokenizer))
    if tokenizer is not None:
        tok_key = tokenizer_fingerprint(tokenizer)
    data_fp = datacache.data_fingerprint(recipe.data, events, base_dir)
    if facts is not None or first_example_id:
        data_fp = {**data_fp, "facts": facts.key() if facts else None, "first_example_id": first_example_id}
    key = datacache.cache_key(recipe, data_fp, tok_key)
    final = root / key
    if use_cache and datacache.is_complete(final):
        prepared = _load_cached(final, recipe, task, tokenizer, info)
        if prepared is not None:
            bar.close()
            if recipe.model.item_tokens:  # a given/pretrained tokenizer does not have them yet
                add_item_tokens(prepared.tokenizer, facts.items if facts else item_vocabulary(prepared.events))
            return prepared

    bar.set_postfix_str("events")
    if events is None:
        from evtlm.ingest.presets import load_event_log

        events = load_event_log(recipe.data, base_dir)
    bar.update()
    bar.set_postfix_str("examples")
    ctx = TaskContext.build(events.events, events.catalog, recipe.task, recipe.split, recipe.verbalize,
                            windows=facts.windows if facts else None, label_space=facts.label_space if facts else None)
    exset = task.build_examples(ctx)
    table = exset.table
    if not (table["split"] == TRAIN).any():
        raise TaskError(f"task {task.name} found no training examples", where="task / split settings",
                        fix="check task.min_history and that the training window holds events")
    if not task.stream:
        assert_prompts_before_labels(ctx.index, table["hist_stop"].to_numpy(), table["label_time"].to_numpy(),
                                     table["hist_start"].to_numpy())
    bar.update()
    bar.set_postfix_str("verbalize")
    from evtlm.text.verbalize import actor_text, verbalize_events

    text = verbalize_events(events.events, events.catalog, recipe.verbalize)
    actors = actor_text(pd.Series(ctx.index.user_ids, dtype="string"), recipe.verbalize)
    train_texts = _stream_texts(ctx, text.piece, actors, exset.train_mask)
    bar.update()
    bar.set_postfix_str("tokenizer")
    if tokenizer is None:
        # training streams plus the training examples' questions and answers: the prompts the
        # model is trained on. Without them " yes" / " no" would be bytes sharing a first token.
        train = table[table["split"] == TRAIN]
        corpus = train_texts + (train["question"] + train["target"]).tolist()
        tokenizer, info = load_tokenizer(recipe.model, corpus, root.parent)
    if recipe.model.item_tokens:  # before any text is tokenized: " <item_7>" must be one token
        add_item_tokens(tokenizer, facts.items if facts else item_vocabulary(events))
    task.check_label_space(exset.label_space, tokenizer)
    bar.update()
    bar.set_postfix_str("tokenize")
    tok = build_event_tokens(tokenizer, text.piece, text.standalone, actors, table["question"], table["target"])
    del text
    user_first = ctx.index.user_start[table["user_code"].to_numpy()]
    table["example_id"] = first_example_id + np.arange(len(table), dtype=np.int64)  # the datasets' example_id
    streams = None
    if recipe.task.formulation == "stream":  # windows of whole streams, every target read in one pass
        from evtlm.data.stream import stream_splits

        streams, kept, stream_tokens = stream_splits(tok, table, ctx, events, exset.label_space, recipe, tokenizer,
                                                     first_example_id)
    else:
        kept = table["hist_start"].to_numpy() if task.stream else fit_budget(tok, table, user_first, recipe.task.max_tokens)
    table["kept_start"] = kept
    bar.update()
    bar.set_postfix_str("datasets")
    where = "writing the data cache (--no-cache skips it, $EVTLM_CACHE moves it)"
    with writing(root, where):
        tmp = datacache.new_entry(root) if use_cache else None
    try:
        with writing(root, where):  # the cache folder, not the temporary entry, is what a user can act on
            dsets, n_tokens = {}, np.zeros(len(table), np.int64)
            for code, split in enumerate(SPLITS):
                rows = np.flatnonzero(table["split"].to_numpy() == code)
                if streams is not None:
                    arrow, n_tokens[rows] = streams[code], stream_tokens[rows]
                else:
                    arrow, n_tokens[rows] = _split_table(tok, table.iloc[rows], kept[rows], user_first[rows], rows,
                                                         recipe.task.max_tokens, task.stream, first_example_id)
                if tmp is not None:  # write now, reopen memory-mapped below: one split in RAM at a time
                    _write_arrow(arrow, tmp / f"{split}.arrow")
                else:
                    from datasets import Dataset
                    from datasets.table import InMemoryTable

                    dsets[split] = Dataset(InMemoryTable(arrow))  # (this copies: fine for the small, uncached case)
                del arrow
            del tok
            table["n_tokens"] = n_tokens
            index = {s: table[table["split"] == c].reset_index(drop=True) for c, s in enumerate(SPLITS)}
            report = build_report(recipe, task, events, exset, index, info, ctx)
            prepared = Prepared(None, exset.label_space, report, tokenizer, info, events, task, index, train_texts)
            if tmp is not None:
                _save(tmp, prepared)
                prepared = _load(datacache.commit_entry(tmp, final), recipe, task, tokenizer, info, from_cache=False)
    except BaseException:  # a failed or interrupted write: its partial entry is never left to be read
        if tmp is not None:
            datacache.discard(tmp)
        raise
    if tmp is None:
        from datasets import DatasetDict

        prepared.datasets = DatasetDict(dsets)
        prepared.examples = TextExamples(prepared, recipe)
    bar.update()
    bar.close()
    return prepared


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


def text_recipe(recipe: Recipe) -> Recipe:
    """The recipe as the text stages must see it, with every task-dependent default resolved.

    - ``task.formulation: auto`` becomes ``stream`` for next_action and for next_item with item
      tokens, ``example`` otherwise; ``model.item_tokens: null`` becomes true for next_item
      unless the formulation is ``example``; ``model.copy_path: null`` becomes true for next_item
      streams, ``model.history_features: null`` for next_action and purchase streams.
    - With item tokens, items are written as their own tokens (``verbalize.item: token``) and the
      "added it to cart" shortcut is off: the item token is always in the text, where the copy
      path and attention can find it.

    Training, evaluation and prediction all go through here, so their prompts cannot drift apart.

    >>> r = text_recipe(Recipe.model_validate({"task": {"name": "next_item"}}))
    >>> r.verbalize.item, r.task.formulation, r.model.copy_path
    ('token', 'stream', True)
    >>> text_recipe(Recipe.model_validate({"task": {"name": "purchase"}})).task.formulation
    'example'
    """
    task, model = recipe.task, recipe.model
    item_tokens = model.item_tokens
    if item_tokens is None:
        item_tokens = task.name == "next_item" and task.formulation != "example"
    formulation = task.formulation
    if formulation == "auto":
        formulation = "stream" if task.name == "next_action" or (task.name == "next_item" and item_tokens) else "example"
    if formulation == "stream" and (task.name not in ("next_item", "next_action", "purchase")
                                    or (task.name == "next_item" and not item_tokens)):
        from evtlm.errors import RecipeError

        raise RecipeError(f"task.formulation=stream does not apply to task {task.name}"
                          + (" without model.item_tokens" if task.name == "next_item" else ""),
                          where="task.formulation", fix="use task.formulation=example (or auto)"
                          + (", or model.item_tokens=true" if task.name == "next_item" else ""))
    copy = model.copy_path if model.copy_path is not None else (task.name == "next_item" and formulation == "stream")
    feats = model.history_features if model.history_features is not None else (
        task.name in ("next_action", "purchase") and formulation == "stream")
    update: dict = {}
    if (formulation, item_tokens, copy, feats) != (task.formulation, model.item_tokens, model.copy_path, model.history_features):
        update["task"] = task.model_copy(update={"formulation": formulation})
        update["model"] = model.model_copy(update={"item_tokens": item_tokens, "copy_path": copy, "history_features": feats})
    if item_tokens and (recipe.verbalize.item != "token" or recipe.verbalize.repeat_shortcut):
        update["verbalize"] = recipe.verbalize.model_copy(update={"item": "token", "repeat_shortcut": False})
    return recipe.model_copy(update=update) if update else recipe


def item_vocabulary(log: EventLog) -> list[str]:
    """Every item id of the log, sorted: the order (and so the ids) of the added item tokens."""
    items = log.events["item_id"].dropna().unique()
    return sorted(str(i) for i in items)


def _stream_texts(ctx: TaskContext, piece: pd.Series, actors: pd.Series, mask: np.ndarray) -> list[str]:
    """Each user's training-window text: actor + pieces (the window is a prefix of their events)."""
    codes = ctx.index.user_code[mask]
    joined = piece[mask].groupby(codes, sort=True).agg("".join)
    return (pd.Series(actors.to_numpy(dtype=object)[joined.index.to_numpy()]) + joined.to_numpy()).tolist()


def _split_table(tok, part: pd.DataFrame, kept: np.ndarray, user_first: np.ndarray, rows: np.ndarray,
                 max_tokens: int, stream: bool, first_example_id: int = 0) -> tuple[pa.Table, np.ndarray]:
    """One split as an Arrow table (sharing the numpy token buffers) and each example's tokens."""
    flat, offsets, prompt_len = example_rows(tok, part, kept, user_first, rows)
    n_tokens = np.diff(offsets)
    if stream:  # pretrain: cut whole streams into max_tokens chunks; every token is a label
        offsets, src = chunk_offsets(offsets, max_tokens)
        ids = list_array(flat, offsets)
        columns = {"input_ids": ids, "labels": ids, "prompt_length": np.zeros(len(src), np.int32),
                   "label_index": np.full(len(src), -1, np.int64), "user_id": part["user_id"].to_numpy(dtype=object)[src],
                   "example_id": np.arange(len(src), dtype=np.int64)}
    else:
        columns = {"input_ids": list_array(flat, offsets),
                   "labels": list_array(masked_labels(flat, offsets, prompt_len), offsets),
                   "prompt_length": prompt_len.astype(np.int32), "label_index": part["label_index"].to_numpy(np.int64),
                   "user_id": part["user_id"].to_numpy(dtype=object), "example_id": first_example_id + rows.astype(np.int64)}
    table = pa.table({k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in columns.items()})
    return table, n_tokens


def _write_arrow(table: pa.Table, path: Path) -> None:
    """An Arrow stream file, the format `datasets.Dataset.from_file` memory-maps.

    Writing record batches straight from the numpy buffers costs no copy; building an in-memory
    `datasets.Dataset` first would copy every token (1 GB more at 5M events).
    """
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=20_000):
            writer.write_batch(batch)


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

