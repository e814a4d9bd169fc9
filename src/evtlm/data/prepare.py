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

This module owns `prepare` and the steps only it runs (the training text, each split's Arrow
table, its file). What it hands on and the cache entry's form (`evtlm.data.prepared`), the
per-split example views (`evtlm.data.example_frames`), the data report (`evtlm.data.data_report`)
and the task-dependent recipe defaults (`evtlm.data.task_defaults`) live beside it and are
re-exported here. It must not import a model or a metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from evtlm.data import cache as datacache
from evtlm.data.data_report import build_report, merge_split_parts, percentile_of_counts, split_parts, split_summary
from evtlm.data.example_frames import ExampleLabels, SplitFrames, TextExamples, example_labels, history_items
from evtlm.data.prepared import LogFacts, Prepared, _load, _load_cached, _save
from evtlm.data.task_defaults import text_recipe
from evtlm.text.encode import build_event_tokens, chunk_offsets, example_rows, fit_budget, list_array, masked_labels
from evtlm.errors import TaskError
from evtlm.ingest.events import EventLog
from evtlm.fsio import default_cache_dir, writing
from evtlm.recipe import Recipe
from evtlm.tasks.splits import SPLITS, TRAIN, assert_prompts_before_labels
from evtlm.tasks import TaskContext, get_task
from evtlm.text.tokenization import (
    TokenizerInfo,
    add_item_tokens,
    ensure_pad,
    load_tokenizer,
    tokenizer_fingerprint,
    try_load_pretrained,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["Prepared", "LogFacts", "SplitFrames", "ExampleLabels", "example_labels", "history_items", "prepare", "text_recipe",
           "item_vocabulary", "TextExamples", "split_parts", "merge_split_parts", "split_summary", "percentile_of_counts"]


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
