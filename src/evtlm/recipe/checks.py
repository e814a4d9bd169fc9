"""Semantic recipe checks: what a recipe's types cannot say, checked when the recipe loads.

A recipe can be well typed and still unable to run: a preset name with a typo, a time zone that
does not exist, leave-one-out splits under a task that needs a global time cutoff, a GPT-2 whose
width does not split into its heads. Each of those used to fail minutes into a run. Here they are
pydantic validators (wired in `evtlm.recipe`): a check reads one section, or several sections at
once (`across_sections`), and returns *every* problem it finds, so that `evtlm validate` lists
all of a recipe's problems in one call, schema errors included.

Every problem names the field, the value and what was expected:

>>> from evtlm.recipe import ScratchConfig
>>> [p["type"].message() for p in scratch_problems(ScratchConfig.model_construct(n_embd=100, n_head=3))]
['got 100, expected a multiple of model.scratch.n_head=3 (e.g. 99 or 102): each attention head gets n_embd / n_head dimensions']
>>> timezone_problem("Asia/Shangai", "verbalize.timezone")
"unknown time zone 'Asia/Shangai' in verbalize.timezone, did you mean 'Asia/Shanghai'? (IANA names such as 'Asia/Shanghai', 'Europe/London', 'UTC')"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from evtlm.errors import closest, did_you_mean

__all__ = ["CHECK", "problem", "raise_problems", "merged", "timezone_problem", "preset_problem", "date_problem", "options_problems", "order_problem",
           "scratch_problems", "sasrec_problems", "k_problem", "across_sections"]

CHECK = "recipe_check"  # the pydantic error type of every semantic problem (its message is complete)

# longest context of the GPT-2 checkpoints known by hub id (a local base is not opened to find out)
KNOWN_POSITIONS = {"gpt2": 1024, "distilgpt2": 1024, "gpt2-medium": 1024, "gpt2-large": 1024, "gpt2-xl": 1024,
                   "openai-community/gpt2": 1024, "distilbert/distilgpt2": 1024}


# ------------------------------------------------------------------------------------ plumbing
def problem(loc: Sequence[str | int], value: Any, message: str) -> InitErrorDetails:
    """One problem at ``loc`` (relative to the model whose validator raises it)."""
    # no context: the message is rendered already and may hold braces (templates)
    return {"type": PydanticCustomError(CHECK, message), "loc": tuple(loc), "input": value}


def raise_problems(title: str, problems: Sequence[InitErrorDetails]) -> None:
    """Raise every problem at once. A ValidationError raised inside a validator keeps its line
    errors, their locations prefixed by where the validated model sits in the recipe."""
    if problems:
        raise ValidationError.from_exception_data(title, list(problems))


def merged(title: str, exc: ValidationError, problems: Sequence[InitErrorDetails]) -> ValidationError:
    """``exc``'s errors and ``problems`` as one ValidationError (schema and semantic problems together)."""
    # each rendered message travels as a custom error of its own type; ctx (a literal's
    # `expected`, read by `evtlm.recipe._describe`) rides along: a rendered message holds no
    # `{key}` placeholder for it to fill
    again: list[InitErrorDetails] = [
        {"type": PydanticCustomError(e["type"], e["msg"], e.get("ctx")), "loc": e["loc"], "input": e.get("input")}
        for e in exc.errors()
    ]
    return ValidationError.from_exception_data(title, again + list(problems))


# ------------------------------------------------------------------------------ single sections
def timezone_problem(tz: str, field: str) -> str | None:
    """Why ``tz`` is not a time zone (None when zoneinfo or pandas knows it: 'utc' is valid too)."""
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(tz)
        return None
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError; '' or '../x' ValueError
        pass
    import pandas as pd  # lazy: only for names zoneinfo lacks but pandas reads ('utc', dateutil)

    try:
        pd.Timestamp("2000-01-01").tz_localize(tz)
        return None
    except Exception:  # noqa: BLE001 - pandas raises several types for an unknown zone
        pass
    from zoneinfo import available_timezones

    near = closest(tz, available_timezones())
    hint = f", did you mean {near[0]!r}?" if near else ""
    return f"unknown time zone {tz!r} in {field}{hint} (IANA names such as 'Asia/Shanghai', 'Europe/London', 'UTC')"


def preset_problem(name: str | None) -> str | None:
    """Why ``data.preset`` names no registered preset (None when it does, or is unset)."""
    if name is None:
        return None
    from evtlm.ingest.presets import (
        PRESETS,  # lazy: presets import the readers, which import this schema
    )

    if name in PRESETS:
        return None
    return f"got {name!r}, expected a known preset: {did_you_mean(name, PRESETS, always_list=True)}"


def options_problems(options: dict[str, Any], preset: str | None) -> list[InitErrorDetails]:
    """``data.options`` are the preset's: none without a preset, no name it does not take."""
    if not options:
        return []
    if preset is None:
        return [problem([], options, f"got options {sorted(options)} without a preset, expected data.preset to be set "
                        "(options belong to a preset) or no data.options")]
    from evtlm.ingest.presets import PRESETS

    known = PRESETS[preset].options
    hint = lambda key: did_you_mean(key, known, always_list=True) if known else "this preset takes no options"  # noqa: E731
    return [problem([key], value, f"got unknown option {key!r} for preset {preset!r}, expected one of its options: {hint(key)}")
            for key, value in options.items() if key not in known]


def order_problem(start: str | None, end: str | None) -> str | None:
    """Why ``data.end`` cannot follow ``data.start`` (None when it can, or either is unset)."""
    a, b = _timestamp(start), _timestamp(end)
    if a is not None and b is not None and (a.tzinfo is None) == (b.tzinfo is None) and a >= b:
        return (f"got {end!r}, expected a time after data.start {start!r} (events at or after data.end are dropped: "
                "nothing would be left)")
    return None


def _timestamp(value: str | None) -> Any:
    """``value`` as a pandas Timestamp; None when unset or not a date (`date_problem` says why)."""
    if not value:
        return None
    import pandas as pd

    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError):
        return None


def date_problem(value: str | None) -> str | None:
    """Why a ``data.start`` / ``data.end`` bound is not a date (None when it is, or is unset)."""
    if value and _timestamp(value) is None:
        return f"got {value!r}, expected an ISO-8601 date or time such as '2017-11-25 00:00'"
    return None


def _multiple_of(value: int, of: int) -> str:
    """'99 or 102': the nearest multiples of ``of`` around ``value``."""
    lo, hi = (value // of) * of, (value // of + 1) * of
    return f"{lo} or {hi}" if lo > 0 else str(hi)


def scratch_problems(cfg: Any) -> list[InitErrorDetails]:
    """The scratch GPT-2's width must split into its heads (GPT2Config would fail minutes in)."""
    if cfg.n_embd % cfg.n_head:
        return [problem(["n_embd"], cfg.n_embd, f"got {cfg.n_embd}, expected a multiple of model.scratch.n_head="
                        f"{cfg.n_head} (e.g. {_multiple_of(cfg.n_embd, cfg.n_head)}): each attention head gets "
                        "n_embd / n_head dimensions")]
    return []


def synthetic_problems(cfg: Any) -> list[InitErrorDetails]:
    """The simulated catalog gives every category at least one item: no more categories than items
    (the simulator would fail drawing the category sizes)."""
    if cfg.items < cfg.categories:
        return [problem(["items"], cfg.items, f"got {cfg.items}, expected at least data.synthetic.categories="
                        f"{cfg.categories} (every category holds at least one item): raise items or lower categories")]
    return []


def sasrec_problems(cfg: Any) -> list[InitErrorDetails]:
    """The SASRec baseline's width must split into its heads (it would fail at evaluation)."""
    if cfg.dim % cfg.heads:
        return [problem(["dim"], cfg.dim, f"got {cfg.dim}, expected a multiple of eval.sasrec.heads={cfg.heads} "
                        f"(e.g. {_multiple_of(cfg.dim, cfg.heads)}): each attention head gets dim / heads dimensions")]
    return []


def k_problem(ks: list[int]) -> str | None:
    """``eval.k``: list lengths for HR/NDCG/MRR@K, at least one, each at least 1."""
    if not ks:
        return "got [], expected at least one list length, e.g. [1, 5, 10, 20]"
    bad = [k for k in ks if k < 1]
    if bad:
        return f"got {ks}, expected list lengths of at least 1 ({bad} cannot rank anything)"
    return None


# ---------------------------------------------------------------------------- across sections
def across_sections(sections: dict[str, Any]) -> list[InitErrorDetails]:
    """Problems between sections, for the sections that validated (a missing one skips its checks).

    ``sections`` maps section name -> validated section (task, split, model, decode, eval).
    """
    task, split, model = sections.get("task"), sections.get("split"), sections.get("model")
    decode, ev = sections.get("decode"), sections.get("eval")
    out: list[InitErrorDetails] = []
    if task is not None and split is not None and task.name == "purchase" and task.level == "user" \
            and split.method == "leave_one_out":
        out.append(problem(["split", "method"], split.method,
                           "got 'leave_one_out' with a user-level purchase task (task.name=purchase, task.level=user), "
                           "expected split.method=time: the question is about a horizon after a global time cutoff, "
                           "which leave-one-out has none of (or set task.level=session)"))
    if task is not None and model is not None:
        out += _context_problems(task, model)
        out += _formulation_problems(task, model)
    if task is not None and ev is not None and ev.baselines:
        out += _baseline_problems(task, ev)
    if task is not None and decode is not None and ev is not None and decode.method == "beam" and task.name == "next_item":
        need = max([decode.top_k, *ev.k])
        if decode.num_beams < need:
            out.append(problem(["decode", "num_beams"], decode.num_beams,
                               f"got {decode.num_beams}, expected at least {need} with decode.method=beam (beam search "
                               f"keeps num_beams items, and decode.top_k / eval.k ask for {need})"))
    return out


def _context_problems(task: Any, model: Any) -> list[InitErrorDetails]:
    """``task.max_tokens`` must fit every position table the run may use."""
    out: list[InitErrorDetails] = []
    scratch = model.scratch
    if model.when_unavailable == "scratch" and task.max_tokens > scratch.n_positions:
        out.append(problem(["task", "max_tokens"], task.max_tokens,
                           f"got {task.max_tokens}, expected at most model.scratch.n_positions={scratch.n_positions}, "
                           "the longest context of the scratch GPT-2 (model.when_unavailable=scratch builds it when "
                           "the base cannot be loaded); lower task.max_tokens or raise model.scratch.n_positions"))
    limit = KNOWN_POSITIONS.get(model.base)
    if limit is not None and task.max_tokens > limit:
        out.append(problem(["task", "max_tokens"], task.max_tokens,
                           f"got {task.max_tokens}, expected at most {limit}, the longest context of model.base "
                           f"{model.base!r}"))
    return out


def task_problem(name: str) -> str | None:
    """Why ``task.name`` names no registered task (`evtlm.tasks.TASKS`), or None."""
    from evtlm.tasks import TASKS  # lazy: the registry imports this schema

    if name in TASKS:
        return None
    return f"got {name!r}, expected a registered task: {did_you_mean(name, TASKS, always_list=True)}"


def task_names(schema: dict[str, Any]) -> None:
    """The JSON schema (and so the README's reference) of ``task.name``: the registered tasks."""
    from evtlm.tasks import TASKS

    schema["enum"] = list(TASKS)


def _formulation_problems(task: Any, model: Any) -> list[InitErrorDetails]:
    """The stream formulation exists for the tasks that declare a layout for it
    (`Task.stream_formulation`), and for next_item only with item tokens; item rows start from the
    transitions only where they are item tokens of a next_item stream."""
    if model.item_init == "transitions":
        if task.name != "next_item":
            return [problem(["model", "item_init"], model.item_init,
                            f"got 'transitions' for task {task.name}, expected 'random' or unset (item rows start from "
                            "the item-to-next-item counts only for next_item)")]
        if task.formulation == "example" or model.item_tokens is False:
            why = "task.formulation=example" if task.formulation == "example" else "model.item_tokens=false"
            return [problem(["model", "item_init"], model.item_init,
                            f"got 'transitions' with {why}, expected 'random' or unset (the rows are those of item "
                            "tokens, read from a next_item stream's training windows)")]
    # the paths that read item-token answers of a next_item stream
    for field, why_needed in (("markov_path", "the path reads the item tokens' rows of a next_item stream"),
                              ("pair_memory", "the memory is over item-token answers of a next_item stream")):
        if getattr(model, field) and (task.name != "next_item" or task.formulation == "example" or model.item_tokens is False):
            why = (f"task {task.name}" if task.name != "next_item" else
                   "task.formulation=example" if task.formulation == "example" else "model.item_tokens=false")
            return [problem(["model", field], True, f"got true with {why}, expected false or unset ({why_needed})")]
    if task.formulation != "stream":
        return []
    from evtlm.tasks import TASKS

    streams = [name for name, cls in TASKS.items() if cls.stream_formulation]
    if task.name not in streams:
        return [problem(["task", "formulation"], task.formulation,
                        f"got 'stream' for task {task.name}, expected 'example' or 'auto' (streams are for "
                        f"{', '.join(streams)})")]
    if task.name == "next_item" and model.item_tokens is False:
        return [problem(["task", "formulation"], task.formulation,
                        "got 'stream' with model.item_tokens=false, expected model.item_tokens true or unset "
                        "(a next_item stream ranks items as single tokens), or task.formulation example / auto")]
    return []


def _baseline_problems(task: Any, ev: Any) -> list[InitErrorDetails]:
    """``eval.baselines`` names baselines of the task (the registry is imported only when set)."""
    from evtlm.evaluate.baselines import baselines_for
    from evtlm.tasks import TASKS

    if task.name not in TASKS:
        return []  # task.name's own check reports it
    valid = baselines_for(task.name)
    return [problem(["eval", "baselines", i], name,
                    f"got {name!r}, expected a baseline of task {task.name}: {did_you_mean(name, valid, always_list=True)}")
            for i, name in enumerate(ev.baselines) if name not in valid]
