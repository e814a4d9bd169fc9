"""What every task shares: the `Task` protocol, its inputs and the example table it returns.

A task turns the canonical events into **examples**. An example is not text yet: it is a row
of a compact table that says which of the user's events form the prompt (a contiguous row
range ``hist_start:hist_stop`` of the sorted events, always strictly before ``label_time``),
which question is appended, and the answer. `evtlm.data.prepare` turns ranges into token ids without
ever building a prompt string, which is what keeps millions of events fast.

Example table columns (one row per example, sorted by split, user, label time):

=============  =======  ==================================================================
user_code      int64    row of the user in `EventIndex` (table order)
user_id        str      the user
split          int8     0 train, 1 valid, 2 test (`evtlm.tasks.splits.SPLITS`)
label_time     int64    ns; the prompt holds only events strictly before it
label_end      int64    ns; the label is decided by the user's events in [label_time, label_end)
hist_start     int64    first event row of the prompt (the user's first event)
hist_stop      int64    one past the last prompt event row
target_pos     int64    the target event's row (next_*), -1 when the label is not one event
question       str      text appended after the history (" Next action:")
label          obj      the answer in plain words: the action ("cart"), the item id, 1/0 (purchase)
target         str      the answer exactly as appended to the prompt (" added to cart")
label_index    int64    index of ``target`` in the label space; -1 outside it (a cold item)
=============  =======  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from evtlm.errors import TaskError
from evtlm.recipe import SplitConfig, TaskConfig, VerbalizeConfig
from evtlm.tasks.splits import (
    SPLITS,
    TRAIN,
    EventIndex,
    TimeWindows,
    split_by_time,
    split_leave_one_out,
    training_event_mask,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

EXAMPLE_COLUMNS: tuple[str, ...] = (
    "user_code", "user_id", "split", "label_time", "label_end", "hist_start", "hist_stop",
    "target_pos", "question", "label", "target", "label_index",
)


@dataclass
class TaskContext:
    """Everything a task reads: the sorted events, their index and the recipe sections."""

    events: pd.DataFrame
    catalog: pd.DataFrame | None
    index: EventIndex
    task: TaskConfig
    split: SplitConfig
    verbalize: VerbalizeConfig
    windows: TimeWindows | None  # None under leave_one_out
    capped: dict[str, int] = field(default_factory=dict)  # split -> examples task.examples_per_user dropped
    # the whole log's label space when these events are one shard of it (evtlm.data.shard_prepare); None:
    # the task derives it from these events
    label_space: list[str] | None = None

    @classmethod
    def build(cls, events: pd.DataFrame, catalog: pd.DataFrame | None, task: TaskConfig,
              split: SplitConfig, verbalize: VerbalizeConfig, *, windows: TimeWindows | None = None,
              label_space: list[str] | None = None) -> TaskContext:
        """``windows`` / ``label_space``: the whole log's, for a shard of it (else from ``events``)."""
        from evtlm.tasks.splits import time_windows

        if windows is None and split.method == "time":
            windows = time_windows(events, split)
        return cls(events, catalog, EventIndex.from_events(events), task, split, verbalize,
                   windows if split.method == "time" else None, label_space=label_space)

    def label_space_or(self, derive) -> list[str]:
        """The fixed label space when there is one, else ``derive()`` (the task's own rule)."""
        return list(self.label_space) if self.label_space is not None else derive()


@dataclass
class ExampleSet:
    """A task's output: the example table, its label space and the training-window events."""

    table: pd.DataFrame
    label_space: list[str]
    train_mask: np.ndarray  # [N] bool: events in the training window
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # task facts for the data report


class Task(Protocol):
    """A prediction task: prompt/target writing, label space and metrics, kept together."""

    name: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]]  # what evaluation reports, in the report's column order ("x@k": every k)
    # the one metric that ranks methods, drives early stopping and heads every report; "name@k"
    # is read at eval.k's 10 (or its largest k): `evtlm.tasks.resolve_primary`
    primary_metric: ClassVar[str]
    # the metrics of this task that improve downwards (losses, calibration errors); every other
    # one improves upwards: `evtlm.tasks.greater_is_better` reads this for reports and early stopping
    lower_is_better: ClassVar[frozenset[str]]
    stream: ClassVar[bool]  # True: causal LM over whole streams (no question, no answer)
    # whether the stream formulation (every target of a window in one pass, evtlm.data.stream)
    # has a layout for this task; the recipe refuses task.formulation=stream otherwise
    stream_formulation: ClassVar[bool]
    # the shape of an answer, which evaluation, the baselines and prediction read: "binary" (P of
    # " yes" over [" no", " yes"]), "classes" (a distribution over the label space), "ranking"
    # (label-space items, best first) or "text" (no answer: an LM over whole streams)
    answer: ClassVar[str]

    def build_examples(self, ctx: TaskContext) -> ExampleSet: ...

    def label_space(self, ctx: TaskContext, train_mask: np.ndarray) -> list[str]: ...

    def check_label_space(self, label_space: list[str], tokenizer: PreTrainedTokenizerBase) -> None: ...


def require_distinct_first_tokens(task: str, label_space: list[str], tokenizer: PreTrainedTokenizerBase) -> None:
    """One-forward-pass decoding reads each answer's first-token logit: they must differ.

    >>> class Words:  # a stand-in tokenizer: one token per word
    ...     def __call__(self, texts, add_special_tokens=False):
    ...         return {"input_ids": [[hash(w) % 1000 for w in t.split()] for t in texts]}
    >>> require_distinct_first_tokens("next_action", [" added to cart", " added to wishlist"], Words())
    Traceback (most recent call last):
    ...
    evtlm.errors.TaskError: answers ' added to cart', ' added to wishlist' of task next_action start with the same token, ...
    """
    if not label_space:
        return
    ids = tokenizer(list(label_space), add_special_tokens=False)["input_ids"]
    first = pd.Series([row[0] if len(row) else -1 for row in ids])
    clash = first.duplicated(keep=False).to_numpy() | (first.to_numpy() < 0)
    if clash.any():
        names = ", ".join(repr(s) for s in np.asarray(label_space, dtype=object)[clash])
        raise TaskError(
            f"answers {names} of task {task} start with the same token",
            where="the task's label space under this tokenizer",
            fix="give those actions verb phrases that start with different words (verbalize.verbs), "
            "or use a tokenizer that splits them differently (model.tokenizer)",
        )


def candidates_frame(ctx: TaskContext, user_code: np.ndarray, label_time: np.ndarray,
                     label_end: np.ndarray, target_pos: np.ndarray, **extra: Any) -> pd.DataFrame:
    """Candidate examples with their prompt ranges (events strictly before ``label_time``)."""
    user_code = np.asarray(user_code, dtype=np.int64)
    frame = pd.DataFrame({
        "user_code": user_code,
        "label_time": np.asarray(label_time, dtype=np.int64),
        "label_end": np.asarray(label_end, dtype=np.int64),
        "hist_start": ctx.index.user_start[user_code],
        "hist_stop": ctx.index.before(user_code, label_time),
        "target_pos": np.asarray(target_pos, dtype=np.int64),
        **extra,
    })
    # stable order: user, then time, then target row (ties at one timestamp keep table order)
    return frame.sort_values(["user_code", "label_time", "target_pos"], kind="mergesort").reset_index(drop=True)


def assign_splits(ctx: TaskContext, cand: pd.DataFrame) -> pd.DataFrame:
    """Drop candidates with too short a history, give each a split, cap examples per user."""
    cand = cand[(cand["hist_stop"] - cand["hist_start"]) >= ctx.task.min_history].reset_index(drop=True)
    if ctx.split.method == "time":
        cand["split"] = split_by_time(cand["label_time"].to_numpy(), ctx.windows)
    else:
        cand["split"] = split_leave_one_out(cand["user_code"].to_numpy())
    return cap_per_user(ctx, cand)


def cap_per_user(ctx: TaskContext, cand: pd.DataFrame) -> pd.DataFrame:
    """Keep each user's latest ``task.examples_per_user`` **training** examples.

    The cap bounds training cost; valid and test keep every example, because the reported
    figures must be on the full splits (a capped test split would over-weight light users and
    silently drop targets). What was dropped is counted per split in ``ctx.capped``, which the
    data report and the run card state.
    """
    cap = ctx.task.examples_per_user
    ctx.capped = {name: 0 for name in SPLITS}
    if cap is not None:
        from_end = cand.groupby(["user_code", "split"], sort=False).cumcount(ascending=False).to_numpy()
        drop = (cand["split"].to_numpy() == TRAIN) & (from_end >= cap)
        ctx.capped[SPLITS[TRAIN]] = int(drop.sum())
        cand = cand[~drop].reset_index(drop=True)
    return cand


def train_mask_for(ctx: TaskContext, cand: pd.DataFrame) -> np.ndarray:
    """Training-window events; training targets count as seen (ties at a LOO cutoff)."""
    mask = training_event_mask(ctx.index, ctx.split.method, ctx.windows, cand["user_code"].to_numpy(),
                               cand["split"].to_numpy(), cand["label_time"].to_numpy())
    pos = cand.loc[(cand["split"] == TRAIN) & (cand["target_pos"] >= 0), "target_pos"].to_numpy()
    mask[pos] = True
    return mask


def finish_table(ctx: TaskContext, cand: pd.DataFrame) -> pd.DataFrame:
    """Add ``user_id``, order the columns and sort by split, user, time."""
    cand = cand.copy()
    cand["user_id"] = pd.array(ctx.index.user_ids[cand["user_code"].to_numpy()], dtype="string")
    cand["split"] = cand["split"].astype(np.int8)
    cand["label_index"] = cand["label_index"].astype(np.int64)
    cand = cand.sort_values(["split", "user_code", "label_time", "target_pos"], kind="mergesort")
    return cand[list(EXAMPLE_COLUMNS)].reset_index(drop=True)


def index_of(values: pd.Series | np.ndarray, label_space: list[str]) -> np.ndarray:
    """Index of each value in the label space, -1 when absent."""
    return pd.Index(label_space).get_indexer(pd.Index(np.asarray(values, dtype=object))).astype(np.int64)


def empty_split_error(task: str, what: str) -> TaskError:
    return TaskError(
        f"task {task} found no {what}",
        where="task / split settings",
        fix="check the data covers the split windows (split.valid_days, split.test_days) and task.min_history",
    )


def next_event_candidates(ctx: TaskContext, require_item: bool) -> pd.DataFrame:
    """next_* candidates: every event (with an item, for next_item; of ``task.target_actions``
    when set) is the target of one example whose prompt is the user's events before it."""
    keep = np.ones(len(ctx.events), dtype=bool)
    if require_item:
        keep &= ctx.events["item_id"].notna().to_numpy()
    if ctx.task.target_actions is not None:
        keep &= ctx.events["action"].isin(ctx.task.target_actions).to_numpy()
    pos = np.flatnonzero(keep).astype(np.int64)
    ts = ctx.index.ts[pos]
    # the label is the one target event: its evidence is [ts, ts + 1 ns)
    cand = candidates_frame(ctx, ctx.index.user_code[pos], ts, ts + 1, pos)
    return assign_splits(ctx, cand)
