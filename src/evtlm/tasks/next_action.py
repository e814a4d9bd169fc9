"""``next_action``: a user's history -> the verb of their next event (a closed set).

The answer is the bare verb phrase of `evtlm.text.verbalize.action_label` with a leading space
(" added to cart"); the label space is the actions that occur in the training window, in the
canonical order of `evtlm.recipe.ACTIONS`. Decoding reads each answer's first-token logit in one
forward pass, so the answers must start with different tokens (`check_label_space`).
An action first seen after the training window keeps its examples with ``label_index = -1``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from evtlm.errors import TaskError
from evtlm.recipe import ACTIONS
from evtlm.tasks.base import (
    ExampleSet,
    TaskContext,
    finish_table,
    index_of,
    next_event_candidates,
    require_distinct_first_tokens,
    train_mask_for,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def answer_of(action: str, ctx: TaskContext) -> str:
    """The answer string of an action: " " + the verbalizer's bare verb phrase."""
    from evtlm.text.verbalize import action_label

    return " " + action_label(action, ctx.verbalize)


class NextAction:
    name: ClassVar[str] = "next_action"
    metric_names: ClassVar[tuple[str, ...]] = ("macro_f1", "accuracy", "roc_auc", "log_loss", "brier", "ece")
    # macro-F1, not accuracy: "view" dominates, and a model that always says "view" is accurate and useless
    primary_metric: ClassVar[str] = "macro_f1"
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"log_loss", "brier", "ece"})
    stream: ClassVar[bool] = False
    stream_formulation: ClassVar[bool] = True
    answer: ClassVar[str] = "classes"
    question: ClassVar[str] = " Next action:"

    def label_space(self, ctx: TaskContext, train_mask: np.ndarray) -> list[str]:
        seen = set(ctx.events["action"].to_numpy()[train_mask].astype(str))
        actions = [a for a in ACTIONS if a in seen]
        answers = [answer_of(a, ctx) for a in actions]
        if len(set(answers)) < len(answers):
            raise TaskError(
                f"two actions share one answer string: {dict(zip(actions, answers))}",
                where="verbalize.verbs",
                fix="give every action its own verb phrase",
            )
        return answers

    def merge_label_spaces(self, ctx: TaskContext, spaces: list[list[str]]) -> list[str]:
        """The label space of a log from its shards' (`evtlm.data.shard_prepare`): what `label_space` gives on the whole log."""
        seen = set().union(*spaces)
        return [answer_of(a, ctx) for a in ACTIONS if answer_of(a, ctx) in seen]

    def build_examples(self, ctx: TaskContext) -> ExampleSet:
        cand = next_event_candidates(ctx, require_item=False)
        mask = train_mask_for(ctx, cand)
        space = ctx.label_space_or(lambda: self.label_space(ctx, mask))
        actions = ctx.events["action"].to_numpy()[cand["target_pos"].to_numpy()].astype(str)
        answers = {a: answer_of(a, ctx) for a in set(actions)}
        cand["question"] = self.question
        cand["label"] = actions
        cand["target"] = pd.Series(actions).map(answers).to_numpy()
        cand["label_index"] = index_of(cand["target"], space)
        return ExampleSet(finish_table(ctx, cand), space, mask)

    def check_label_space(self, label_space: list[str], tokenizer: PreTrainedTokenizerBase) -> None:
        require_distinct_first_tokens(self.name, label_space, tokenizer)
