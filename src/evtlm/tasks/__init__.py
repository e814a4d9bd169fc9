"""The task registry: ``get_task(name)`` -> a `Task` that owns prompts, label space and metrics.

>>> sorted(TASKS)
['next_action', 'next_item', 'pretrain', 'purchase']
>>> get_task("purchase").metric_names
('roc_auc', 'log_loss', 'brier', 'ece', 'accuracy', 'macro_f1')
>>> get_task("purchse")
Traceback (most recent call last):
...
evtlm.errors.TaskError: unknown task 'purchse', task.name, did you mean 'purchase'? tasks: next_action, next_item, pretrain, purchase
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evtlm.errors import TaskError, did_you_mean
from evtlm.recipe import TaskConfig
from evtlm.tasks.base import EXAMPLE_COLUMNS, ExampleSet, Task, TaskContext
from evtlm.tasks.next_action import NextAction
from evtlm.tasks.next_item import NextItem
from evtlm.tasks.pretrain import Pretrain
from evtlm.tasks.purchase import SESSION_QUESTION, Purchase, user_questions

__all__ = ["TASKS", "get_task", "resolve_primary", "greater_is_better", "answer_of", "questions_at", "Task", "TaskContext", "ExampleSet", "EXAMPLE_COLUMNS"]

TASKS: dict[str, type] = {cls.name: cls for cls in (NextAction, NextItem, Purchase, Pretrain)}


def get_task(name: str) -> Task:
    """A fresh task object for ``name`` (a `TaskConfig.name`)."""
    if name not in TASKS:
        hint = did_you_mean(name, TASKS)
        valid = ", ".join(sorted(TASKS))
        raise TaskError(f"unknown task {name!r}", where="task.name",
                        fix=hint if hint.startswith("valid") else f"{hint} tasks: {valid}")
    return TASKS[name]()


def _task_class(name: str) -> type:
    """The registered class of task ``name`` (an unknown name: `get_task`'s error)."""
    if name not in TASKS:
        get_task(name)
    return TASKS[name]


def resolve_primary(name: str, ks: Sequence[int]) -> tuple[str, bool]:
    """``(metric, greater_is_better)`` of task ``name`` under ``eval.k`` = ``ks``: the task's own
    `Task.primary_metric`, its "@k" at 10 when 10 is among ``ks``, else at the largest. The one
    answer data_report.json, metrics.json, early stopping and the README's tables all use.

    >>> resolve_primary("next_item", [1, 5, 20]), resolve_primary("next_action", [10])
    (('ndcg@20', True), ('macro_f1', True))
    """
    task = _task_class(name)
    metric = task.primary_metric
    if metric.endswith("@k"):
        metric = f"{metric[:-1]}{10 if 10 in ks else max(ks)}"
    return metric, greater_is_better(name, metric)


def answer_of(name: str) -> str:
    """The shape of task ``name``'s answers (`Task.answer`): binary, classes, ranking or text.

    >>> answer_of("purchase"), answer_of("next_action"), answer_of("next_item")
    ('binary', 'classes', 'ranking')
    """
    return _task_class(name).answer


def greater_is_better(name: str, metric: str) -> bool:
    """Whether ``metric`` of task ``name`` improves upwards (`Task.lower_is_better` says which do not).

    >>> greater_is_better("purchase", "roc_auc"), greater_is_better("purchase", "log_loss"), greater_is_better("pretrain", "loss")
    (True, False, False)
    """
    task = _task_class(name)
    return metric not in task.lower_is_better


def questions_at(cfg: TaskConfig, last_ts: np.ndarray, as_of: int) -> np.ndarray:
    """The question each prompt ends with when asked at ``as_of`` (int ns) after a history whose
    last event is at ``last_ts``: the training layout, for prediction time (`evtlm.decode.inference`).

    >>> questions_at(TaskConfig(name="next_item"), np.array([0, 5]), 10).tolist()
    [' Next item:', ' Next item:']
    """
    if cfg.name == "purchase" and cfg.level == "user":
        return user_questions(last_ts, as_of, cfg.horizon_days)
    if cfg.name == "pretrain":
        question = ""
    elif cfg.name == "purchase":
        question = SESSION_QUESTION
    else:
        question = TASKS[cfg.name].question
    return np.full(len(last_ts), question, dtype=object)
