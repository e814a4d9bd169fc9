"""A task written outside src/: "is the next event a purchase?", a yes/no question after every
event. Registered by tests/test_toy_task.py with one registry line, it shows what adding a task
takes: this module and ``TASKS[name] = cls``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from evtlm.tasks.base import (ExampleSet, TaskContext, finish_table, next_event_candidates, require_distinct_first_tokens,
                              train_mask_for)

ANSWERS = [" no", " yes"]


class NextIsPurchase:
    name: ClassVar[str] = "next_is_purchase"
    metric_names: ClassVar[tuple[str, ...]] = ("roc_auc", "log_loss", "brier", "ece", "accuracy", "macro_f1")
    primary_metric: ClassVar[str] = "roc_auc"
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"log_loss", "brier", "ece"})
    stream: ClassVar[bool] = False
    stream_formulation: ClassVar[bool] = False
    answer: ClassVar[str] = "binary"
    question: ClassVar[str] = " Buys next?"

    def label_space(self, ctx: TaskContext, train_mask: np.ndarray) -> list[str]:
        return list(ANSWERS)

    def build_examples(self, ctx: TaskContext) -> ExampleSet:
        cand = next_event_candidates(ctx, require_item=False)
        mask = train_mask_for(ctx, cand)
        buys = ctx.events["action"].to_numpy()[cand["target_pos"].to_numpy()].astype(str) == "purchase"
        cand["question"] = self.question
        cand["label"] = buys.astype(np.int64)
        cand["target"] = np.where(buys, ANSWERS[1], ANSWERS[0])
        cand["label_index"] = buys.astype(np.int64)
        return ExampleSet(finish_table(ctx, cand), list(ANSWERS), mask)

    def check_label_space(self, label_space: list[str], tokenizer) -> None:
        require_distinct_first_tokens(self.name, label_space, tokenizer)
