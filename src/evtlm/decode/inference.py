"""What `evtlm evaluate` and `evtlm predict` share: the run's recipe, its label space, the
constrained decoder, and prompts for the "now" state of a user.

**Prompts at prediction time are built by the training code.** `now_prompts` lays out each
user's prompt exactly as `evtlm.data.prepare` does for a training example (the same verbalizer, the same
`evtlm.text.encode` pool, ``fit_budget`` dropping the oldest events, ``example_rows`` gathering ids),
with the label time at ``as_of``: every event strictly before it is history, and the question is
the task's. ``tests/test_predict.py`` checks that the ids equal the training prompt's ids for
the same user and label time, for every task, so the two cannot drift apart.

>>> from evtlm.recipe import VerbalizeConfig
>>> action_names([" viewed", " added to cart"], VerbalizeConfig())
['view', 'cart']
>>> import pandas as pd
>>> ev = pd.DataFrame({"item_id": ["7", "8", None]})
>>> label_item_ids([" Product 8", " Product 7", " Product 9"], ev, None, VerbalizeConfig())
['8', '7', '9']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evtlm.errors import RunDirError, TaskError
from evtlm.recipe import ACTIONS, DecodeConfig, Recipe, VerbalizeConfig

__all__ = [
    "load_run_recipe",
    "load_for_inference",
    "read_label_space",
    "action_names",
    "label_item_ids",
    "Decoder",
    "NowPrompts",
    "now_prompts",
]

DECISION_FILE = "decision.json"  # next_action: per-class offsets fitted on validation by evtlm evaluate

LABEL_ITEMS = "label_items.json"  # item ids aligned to label_space.json (next_item; see evtlm.evaluate.harness)


# ------------------------------------------------------------------------------- run directory
# What may differ between training a run and evaluating it: how answers are decoded, how they are
# judged, and where the (same, fingerprinted) data files lie now. Anything else (task, split,
# verbalize, model, ...) would ask the model about text or labels it was not trained on.
RUN_OVERRIDES = ("decode", "eval", "data.path", "data.catalog.path")


def load_run_recipe(run_dir: str | Path, overrides: Sequence[str] = (), *, command: str = "evtlm evaluate") -> Recipe:
    """The run's recipe from ``recipe.resolved.yaml``, as the text stages saw it, with ``key=value``
    ``overrides`` of the keys in `RUN_OVERRIDES` (the syntax of `evtlm finetune`).

    The file holds the data section with its preset already merged in (`evtlm.train.run_dir`), so
    loading it back gives exactly the settings the run was trained with; `text_recipe` applies
    what the model options imply for the text (item tokens), as `evtlm.data.prepare.prepare` does.
    """
    from evtlm.data.prepare import text_recipe
    from evtlm.errors import RecipeError
    from evtlm.recipe import load_recipe

    path = Path(run_dir) / "recipe.resolved.yaml"
    if not path.is_file():
        raise RunDirError(f"{path} is missing", where=str(run_dir),
                          fix="point --run at a directory written by `evtlm finetune`")
    for item in overrides:
        key = item.partition("=")[0].strip()
        if "=" in item and not any(key == k or key.startswith(k + ".") for k in RUN_OVERRIDES):
            raise RecipeError(f"override {item!r} would change what the run was trained on", where=command,
                              fix=f"{command} takes overrides of decode.*, eval.*, data.path and data.catalog.path; "
                              "train a new run for other settings (evtlm finetune RECIPE key=value)")
    return text_recipe(load_recipe(path, overrides))


def read_label_space(run_dir: str | Path) -> list[str]:
    path = Path(run_dir) / "label_space.json"
    if not path.is_file():
        raise RunDirError(f"{path} is missing", where=str(run_dir), fix="re-run `evtlm finetune` (it writes the label space)")
    return list(json.loads(path.read_text()))


def load_for_inference(run_dir: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer) of a run for decoding: on the GPU when there is one, LoRA merged into
    the base weights (same outputs; every forward skips the adapter's extra matmuls, about half
    the CPU time of a small model)."""
    import torch

    from evtlm.train.run_dir import load_run_model

    model, tokenizer = load_run_model(run_dir, device="cuda" if torch.cuda.is_available() else None)
    holder = model if not getattr(model, "is_stream", False) else model.lm  # a StreamLM merges its LM
    if hasattr(holder, "merge_and_unload"):
        try:
            merged = holder.merge_and_unload()
        except (ValueError, NotImplementedError, AttributeError):  # an adapter peft cannot merge: run it unmerged
            merged = holder
        if holder is model:
            model = merged
        else:
            model.lm = merged
    return model.eval(), tokenizer


def check_task(name: str, what: str) -> None:
    """Only tasks with an answer can be predicted: not the ones that train an LM on whole streams
    (`Task.stream`, pretrain), whose runs are bases."""
    from evtlm.tasks import TASKS

    closed = [task for task, cls in TASKS.items() if not cls.stream]
    if name not in closed:
        raise TaskError(f"{what} answers questions of tasks {', '.join(closed)}; this run's task is {name!r}",
                        where="task.name in the run's recipe", fix="pretrain runs are bases: fine-tune a task on top")


# ------------------------------------------------------------------------------ label spaces
def action_names(label_space: Sequence[str], cfg: VerbalizeConfig) -> list[str]:
    """Canonical actions in label-space order (the answers are " " + the bare verb phrase)."""
    from evtlm.text.verbalize import action_label

    by_answer = {" " + action_label(a, cfg): a for a in ACTIONS}
    missing = [s for s in label_space if s not in by_answer]
    if missing:
        raise RunDirError(f"label space answers {missing} are no action's verb phrase under this recipe",
                          where="label_space.json vs the recipe's verbalize.verbs",
                          fix="use the run directory's own recipe.resolved.yaml")
    return [by_answer[s] for s in label_space]


def label_item_ids(label_space: Sequence[str], events: pd.DataFrame, catalog: pd.DataFrame | None,
                   cfg: VerbalizeConfig) -> list[str | None]:
    """The item id behind each next_item answer (" Product 1002" -> "1002"), None when unknown.

    Items of ``events`` and ``catalog`` are rendered as the task renders answers; an answer no
    known item renders to falls back to inverting the ``id`` form (prefix + " " + id).
    """
    from evtlm.text.verbalize import render_items

    ids = pd.Series(events["item_id"].dropna().unique(), dtype="string")
    if catalog is not None and "item_id" in catalog:
        ids = pd.Series(pd.unique(pd.concat([ids, catalog["item_id"].astype("string")]).to_numpy(dtype=object)), dtype="string")
    rendered = " " + render_items(ids, catalog, cfg).astype(str)
    first = pd.Series(ids.to_numpy(dtype=object), index=rendered.to_numpy())
    first = first[~first.index.duplicated()]  # two items with one title: the answer is the first
    found = first.reindex(pd.Index(list(label_space), dtype=object)).to_numpy(dtype=object)
    prefix = " " + (cfg.item_prefix + " " if cfg.item_prefix else "")
    out: list[str | None] = []
    for label, item in zip(label_space, found):
        if isinstance(item, str):
            out.append(item)
        elif cfg.item == "id" and label.startswith(prefix):
            out.append(label[len(prefix):])
        else:
            out.append(None)
    return out


def run_label_items(run_dir: str | Path, label_space: Sequence[str], events: pd.DataFrame,
                    catalog: pd.DataFrame | None, cfg: VerbalizeConfig) -> list[str]:
    """Item ids of a run's label space: ``label_items.json`` when the run has it, else rendered."""
    path = Path(run_dir) / LABEL_ITEMS
    if path.is_file():
        items = json.loads(path.read_text())
        if len(items) == len(label_space):
            return [i if i is not None else s.strip() for i, s in zip(items, label_space)]
    found = label_item_ids(label_space, events, catalog, cfg)
    return [i if i is not None else s.strip() for i, s in zip(found, label_space)]


# ------------------------------------------------------------------------------------ decoding
@dataclass
class Decoder:
    """The run's constrained decoder over its label space, with the recipe's decode settings."""

    model: Any
    tokenizer: Any
    task: str
    label_space: list[str]
    cfg: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        from evtlm.decode.methods import candidate_token_ids

        self.candidates = candidate_token_ids(self.tokenizer, self.label_space)
        self.pad_id = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id)
        self.end_id = self.tokenizer.eos_token_id if self.cfg.score_eos else None

    def probs(self, prompts: Sequence[Sequence[int]], batch_size: int | None = None) -> np.ndarray:
        """A distribution [n, C] over a closed label space (purchase, next_action)."""
        from evtlm.decode.methods import closed_set_probs

        method = "auto" if self.cfg.method == "beam" else self.cfg.method  # beams are for catalogs
        return closed_set_probs(self.model, prompts, self.candidates, method=method,
                                batch_size=batch_size or self.cfg.batch_size, pad_id=self.pad_id, end_id=self.end_id)

    def items(self, prompts: Sequence[Sequence[int]], top_k: int, exclude: Sequence[Sequence[int]] | None = None,
              batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k label-space indices and log-probabilities [n, k] (-1 / -inf padding)."""
        from evtlm.decode.methods import decode_items

        limit = {"sequence": len(self.candidates), "beam": 0}.get(self.cfg.method, self.cfg.exhaustive_max_items)
        return decode_items(self.model, prompts, self.candidates, top_k=top_k, num_beams=max(self.cfg.num_beams, top_k),
                            exclude=exclude, batch_size=batch_size or self.cfg.batch_size, pad_id=self.pad_id,
                            end_id=self.end_id, exhaustive_max_items=limit)


def history_exclusions(history_items: Sequence[Sequence[str]], item_index: dict[str, int]) -> list[list[int]]:
    """Label-space indices of each example's own history items (for decode.exclude_history_items)."""
    return [sorted({item_index[i] for i in items if i in item_index}) for items in history_items]


# ------------------------------------------------------------------------------------- prompts
@dataclass
class NowPrompts:
    """Per user (in table order): the prompt ids, or why there is none."""

    user_ids: list[str]
    prompts: list[list[int] | None]
    errors: dict[int, str]  # position in user_ids -> reason
    history_items: list[list[str]]  # the user's item ids in the whole history (for exclusions)
    truncated: np.ndarray  # [U] bool: oldest events dropped to fit task.max_tokens


def now_prompts(events: pd.DataFrame, catalog: pd.DataFrame | None, recipe: Recipe, tokenizer: Any,
                reserve: str | Sequence[str], as_of: int) -> NowPrompts:
    """Prompt ids for every user of ``events`` (canonical, sorted, all before ``as_of``) at ``as_of``.

    ``reserve`` is the answer text the budget keeps room for (the longest label, so any answer
    fits after the prompt as in training; one per user to reproduce a training example exactly).
    Users with fewer than ``task.min_history`` events, or whose question alone exceeds
    ``task.max_tokens``, get an error instead of a prompt.
    """
    from evtlm.text.encode import build_event_tokens, example_rows, fit_budget
    from evtlm.tasks.splits import EventIndex
    from evtlm.tasks import questions_at
    from evtlm.text.verbalize import actor_text, verbalize_events

    events = events.reset_index(drop=True)
    index = EventIndex.from_events(events)
    users = [str(u) for u in index.user_ids]
    counts = index.user_stop - index.user_start
    last = index.ts[np.maximum(index.user_stop - 1, 0)] if len(events) else np.zeros(0, np.int64)
    if len(events) and last.max() >= as_of:
        raise TaskError("events at or after the prediction time reached now_prompts", where="evtlm.decode.inference",
                        fix="drop events at or after as_of first")
    errors: dict[int, str] = {}
    need = recipe.task.min_history
    for u in np.flatnonzero(counts < need):
        errors[int(u)] = f"{int(counts[u])} usable events; the task needs at least {need} (task.min_history)"
    items = events["item_id"].to_numpy(dtype=object, na_value=None)
    history = [[i for i in items[a:b] if i is not None] for a, b in zip(index.user_start, index.user_stop)]
    prompts: list[list[int] | None] = [None] * len(users)
    truncated = np.zeros(len(users), dtype=bool)
    ok = np.flatnonzero(counts >= need)
    if len(ok) == 0:
        return NowPrompts(users, prompts, errors, history, truncated)

    text = verbalize_events(events, catalog, recipe.verbalize)
    actors = actor_text(pd.Series(index.user_ids, dtype="string"), recipe.verbalize)
    questions = questions_at(recipe.task, last, as_of)  # the training layout (evtlm.tasks)
    answers = np.asarray([reserve] * len(users) if isinstance(reserve, str) else list(reserve), dtype=object)
    for _ in range(2):  # a second pass only when some user's question alone overflows the budget
        table = pd.DataFrame({"user_code": ok, "user_id": pd.array(index.user_ids[ok], dtype="string"),
                              "hist_start": index.user_start[ok], "hist_stop": index.user_stop[ok],
                              "target": answers[ok]})
        tok = build_event_tokens(tokenizer, text.piece, text.standalone, actors, pd.Series(questions[ok]),
                                 pd.Series(answers[ok]))
        # as in evtlm.text.encode.fit_budget: actor + question + answer + eos must fit, history optional
        fixed = tok.actor_len[ok] + tok.question_len + tok.answer_len + 1
        over = fixed > recipe.task.max_tokens
        if not over.any():
            break
        for u, n in zip(ok[over], fixed[over]):
            errors[int(u)] = (f"the question and answer alone take {int(n)} tokens, over task.max_tokens="
                              f"{recipe.task.max_tokens} (a very long user id?)")
        ok = ok[~over]
        if len(ok) == 0:
            return NowPrompts(users, prompts, errors, history, truncated)
    user_first = index.user_start[ok]
    kept = fit_budget(tok, table, user_first, recipe.task.max_tokens)
    flat, offsets, prompt_len = example_rows(tok, table, kept, user_first, np.arange(len(ok)))
    for u, start, n in zip(ok, offsets[:-1], prompt_len):
        prompts[int(u)] = flat[start:start + n].tolist()
    truncated[ok] = kept > index.user_start[ok]
    return NowPrompts(users, prompts, errors, history, truncated)
