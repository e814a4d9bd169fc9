"""The ``task`` and ``split`` sections: what is predicted and how examples are split without
leakage (`evtlm.tasks` reads them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from evtlm.recipe import checks
from evtlm.recipe.base import Action, Section


# --------------------------------------------------------------------------------- task, split
class TaskConfig(Section):
    """What is predicted. Each task owns its prompt, label space and metrics (evtlm.tasks)."""

    name: str = Field(
        "purchase", json_schema_extra=checks.task_names,
        description="what is predicted: a task of the registry (evtlm.tasks.TASKS; each task module says what it asks)")
    level: Literal["user", "session"] = Field("user", description="purchase only")
    horizon_days: float = Field(7.0, gt=0, description="purchase (user level): buys within H after cutoff")
    cutoff_every_days: float | None = Field(
        None, gt=0,
        description="purchase (user level): days between training cutoffs, each labelled over its full horizon inside the "
                    "training window. None: one every horizon_days. Denser cutoffs give every user more labels (the stream "
                    "formulation reads them all in one pass per window)")
    min_history: int = Field(1, ge=1, description="events a prompt needs at least")
    examples_per_user: int | None = Field(
        None, ge=1,
        description="cap on training examples per user (latest); valid/test keep all")
    target_actions: list[Action] | None = Field(None, description="next_*: only these events are targets; None: all")
    max_tokens: int = Field(512, ge=16, description="context budget; oldest events are dropped first")
    formulation: Literal["auto", "stream", "example"] = Field(
        "auto",
        description="stream: one forward pass over a window of the user's events supervises every target in it "
                    "(evtlm.data.stream; next_item, next_action, purchase); example: one prompt per target with a question. "
                    "auto: stream for next_item (with item tokens) and next_action, example otherwise")
    stream_min_context: float = Field(
        0.5, ge=0, lt=1,
        description="stream evaluation: share of a window kept as context before any target it reads")

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        """``task.name: purchse`` fails at load with the closest registered task."""
        why = checks.task_problem(value)
        if why:
            raise PydanticCustomError(checks.CHECK, why)
        return value


class SplitConfig(Section):
    """Leakage-safe splits: global time windows (default) or leave-one-out."""

    method: Literal["time", "leave_one_out"] = Field(
        "time",
        description="time: global cutoffs (train < valid < test windows); leave_one_out: last event per user is test")
    valid_days: float = Field(7.0, gt=0, description="length of the validation window before the test window (time split)")
    test_days: float = Field(7.0, gt=0, description="length of the test window at the end of the log (time split)")
