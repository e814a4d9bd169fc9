"""``pretrain``: causal language modelling over whole verbalized event streams.

One example per user and split: the user's events in that split's window (time split) or at
that split's positions (leave-one-out: the last event is test, the second-to-last valid), as
one stream ``actor + pieces + eos``; `evtlm.data.prepare` cuts streams into ``task.max_tokens`` chunks
and sets ``labels == input_ids``. There is no question, no answer and no label space. Used for
domain pretraining and for the from-scratch base (`model.when_unavailable: scratch`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from evtlm.tasks.splits import TRAIN, split_by_time, split_leave_one_out
from evtlm.tasks.base import ExampleSet, TaskContext, finish_table

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class Pretrain:
    name: ClassVar[str] = "pretrain"
    metric_names: ClassVar[tuple[str, ...]] = ("loss", "perplexity")
    primary_metric: ClassVar[str] = "loss"
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"loss", "perplexity"})
    stream: ClassVar[bool] = True
    stream_formulation: ClassVar[bool] = False
    answer: ClassVar[str] = "text"

    def event_splits(self, ctx: TaskContext) -> np.ndarray:
        """[N] split code of every event."""
        if ctx.windows is not None:
            return split_by_time(ctx.index.ts, ctx.windows)
        return split_leave_one_out(ctx.index.user_code)

    def label_space(self, ctx: TaskContext, train_mask: np.ndarray) -> list[str]:
        return []

    def build_examples(self, ctx: TaskContext) -> ExampleSet:
        idx = ctx.index
        split = self.event_splits(ctx)
        n = len(split)
        # one stream per run of rows with the same (user, split); splits are monotone in time per user
        new = np.ones(n, dtype=bool)
        new[1:] = (idx.user_code[1:] != idx.user_code[:-1]) | (split[1:] != split[:-1])
        start = np.flatnonzero(new)
        stop = np.append(start[1:], n)
        cand = pd.DataFrame({
            "user_code": idx.user_code[start],
            "split": split[start],
            "label_time": idx.ts[stop - 1] + 1,
            "hist_start": start,
            "hist_stop": stop,
            "target_pos": -1,
            "question": "",
            "label": "",
            "target": "",
            "label_index": -1,
        })
        cand["label_end"] = cand["label_time"]
        cand = cand[(cand["hist_stop"] - cand["hist_start"]) >= ctx.task.min_history]
        return ExampleSet(finish_table(ctx, cand), [], split == TRAIN)

    def check_label_space(self, label_space: list[str], tokenizer: PreTrainedTokenizerBase) -> None:
        return None
