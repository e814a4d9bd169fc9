"""``next_item``: a user's history -> the item of their next event.

The answer is the item as the verbalizer writes it, with a leading space (" Product 1002" or a
title). The label space is every item seen in the training window, rendered the same way,
sorted. An item first seen after the training window is a **cold** item: its example is kept
with ``label_index = -1`` (a guaranteed miss for any model restricted to the label space) and
counted in the data report, never dropped, so metrics are not flattered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from evtlm.tasks.splits import SPLITS
from evtlm.tasks.base import (
    ExampleSet,
    TaskContext,
    empty_split_error,
    finish_table,
    index_of,
    next_event_candidates,
    train_mask_for,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def render_answers(items: np.ndarray, ctx: TaskContext) -> pd.Series:
    """" " + rendered item, indexed by item id (each distinct item rendered once)."""
    from evtlm.text.verbalize import render_items

    distinct = pd.Series(pd.unique(np.asarray(items, dtype=object)), dtype="string")
    rendered = render_items(distinct, ctx.catalog, ctx.verbalize)
    return pd.Series((" " + pd.Series(rendered).astype(str)).to_numpy(), index=distinct.to_numpy(dtype=object))


class NextItem:
    name: ClassVar[str] = "next_item"
    metric_names: ClassVar[tuple[str, ...]] = ("hr@k", "ndcg@k", "mrr@k")
    primary_metric: ClassVar[str] = "ndcg@k"  # NDCG@10, or at the largest eval.k without 10 (resolve_primary)
    lower_is_better: ClassVar[frozenset[str]] = frozenset()  # hit rates and ranks: higher is better
    stream: ClassVar[bool] = False
    stream_formulation: ClassVar[bool] = True
    answer: ClassVar[str] = "ranking"
    question: ClassVar[str] = " Next item:"

    def label_space(self, ctx: TaskContext, train_mask: np.ndarray) -> list[str]:
        items = ctx.events["item_id"].to_numpy(dtype=object, na_value=None)[train_mask]
        items = items[pd.notna(items)]
        if len(items) == 0:
            raise empty_split_error(self.name, "items in the training window")
        return sorted(set(render_answers(items, ctx).to_numpy()))

    def merge_label_spaces(self, ctx: TaskContext, spaces: list[list[str]]) -> list[str]:
        """The label space of a log from its shards' (`evtlm.data.shard_prepare`): what `label_space` gives on the whole log."""
        return sorted(set().union(*spaces))

    def build_examples(self, ctx: TaskContext) -> ExampleSet:
        cand = next_event_candidates(ctx, require_item=True)
        mask = train_mask_for(ctx, cand)
        space = ctx.label_space_or(lambda: self.label_space(ctx, mask))
        items = ctx.events["item_id"].to_numpy(dtype=object, na_value=None)[cand["target_pos"].to_numpy()]
        answers = render_answers(items, ctx)
        cand["question"] = self.question
        cand["label"] = items
        cand["target"] = answers.reindex(items).to_numpy()
        cand["label_index"] = index_of(cand["target"], space)
        table = finish_table(ctx, cand)
        return ExampleSet(table, space, mask, info={"cold_items": cold_report(table)})

    def check_label_space(self, label_space: list[str], tokenizer: PreTrainedTokenizerBase) -> None:
        # multi-token answers are decoded by sequence scoring / trie beams: only emptiness matters
        if any(not s.strip() for s in label_space):
            from evtlm.errors import TaskError

            raise TaskError("an item renders as an empty string", where="verbalize.item / the catalog",
                            fix="give every item a non-empty title or use verbalize.item=id")


def cold_report(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per split: examples whose item is outside the label space, their share, distinct items.

    >>> t = pd.DataFrame({"split": [0, 1, 2, 2], "label": ["a", "a", "b", "c"], "label_index": [0, 0, -1, -1]})
    >>> cold_report(t)["test"]
    {'examples': 2, 'share': 1.0, 'distinct_items': 2}
    """
    out: dict[str, dict[str, float]] = {}
    for code, name in enumerate(SPLITS):
        part = table[table["split"] == code]
        cold = part[part["label_index"] < 0]
        out[name] = {
            "examples": int(len(cold)),
            "share": float(len(cold) / len(part)) if len(part) else 0.0,
            "distinct_items": int(cold["label"].nunique()),
        }
    return out
