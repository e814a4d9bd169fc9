"""Loading a recipe: YAML and ``a.b=c`` overrides in, a validated `Recipe` out, every problem
reported at once with its dotted path and the valid keys (`RecipeError`); and dumping one back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from evtlm.errors import RecipeError, did_you_mean
from evtlm.recipe import checks
from evtlm.recipe.schema import Recipe


# ------------------------------------------------------------------------------------ loading
def load_recipe(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe YAML (or the defaults when ``path`` is None) and apply ``a.b=c`` overrides.

    Override values are parsed as YAML, so ``train.lr=3e-4`` is a float and
    ``eval.k=[1,10]`` a list. Every problem is reported at once, each with its dotted path.
    Relative data paths (``data.path``, ``data.catalog.path``) are resolved against the current
    directory and kept absolute.

    >>> load_recipe(None, ["train.lr=3e-4", "task.name=next_action"]).train.lr
    0.0003
    >>> load_recipe(None, ["train.lr_rate=1", "train.epochs=lots"])
    Traceback (most recent call last):
    ...
    evtlm.errors.RecipeError: 2 problems in the recipe: train.epochs: expected a number, got 'lots'; train.lr_rate: unknown key (did you mean 'lr'?), <defaults> with overrides train.lr_rate=1 train.epochs=lots, fix the keys above (`evtlm recipe show` prints every valid key with its default)
    """
    source = "<defaults>" if path is None else str(path)
    raw: dict[str, Any] = {} if path is None else _read_yaml(Path(path))
    for item in overrides:
        _apply_override(raw, item)
    _absolute_data_paths(raw)
    if path is not None and not raw.get("name"):
        raw["name"] = Path(path).stem
    where = source + (f" with overrides {' '.join(overrides)}" if overrides else "")
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        problems = problem_lines(exc)
        noun = "problem" if len(problems) == 1 else "problems"
        raise RecipeError(
            f"{len(problems)} {noun} in the recipe: " + "; ".join(problems),
            where=where,
            fix="fix the keys above (`evtlm recipe show` prints every valid key with its default)",
            problems=problems,
        ) from None


def dump_recipe(recipe: Recipe) -> str:
    """The fully resolved recipe as YAML (every default written out)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}", fix="give a path to a .yaml file, e.g. recipes/purchase.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        raise RecipeError(f"not valid YAML ({getattr(exc, 'problem', exc)})", where=where, fix="check indentation and quoting") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError(f"a recipe must be a mapping of sections, got {type(data).__name__}", where=str(path))
    return data


def _absolute_data_paths(raw: dict[str, Any]) -> None:
    """``data.path`` and ``data.catalog.path`` made absolute, relative ones against the current
    directory (where `make finetune` and the shipped recipes' ``../shared/data/...`` expect them,
    as for any path given on a command line). The loaded recipe then names the same files from
    any directory, and so does the run's ``recipe.resolved.yaml`` (`evtlm evaluate --run`)."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return
    for node in (data, data.get("catalog")):
        value = node.get("path") if isinstance(node, dict) else None
        if isinstance(value, str) and value.strip():
            path = Path(value).expanduser()
            node["path"] = str(path if path.is_absolute() else path.resolve())


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``raw['a']['b'] = value`` for the override ``a.b=value`` (value parsed as YAML)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override {item!r} is not of the form key.sub=value", fix="e.g. train.epochs=1")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def problem_lines(exc: ValidationError, prefix: str = "") -> list[str]:
    """Every error of ``exc`` as ``dotted.path: what is wrong (what is allowed)``, sorted.

    ``prefix`` places a section's errors in the recipe (``"data."`` for a `DataConfig`).
    """
    return sorted(prefix + _describe(err) for err in exc.errors())


def _describe(err: dict[str, Any]) -> str:
    """One pydantic error as ``dotted.path: what is wrong (what is allowed)``."""
    loc = [str(p) for p in err["loc"]]
    path = ".".join(loc) or "<root>"
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        return f"{path}: unknown key ({did_you_mean(loc[-1], valid)})"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        expected = "a whole number" if kind.startswith("int") else "a number"
        return f"{path}: expected {expected}, got {value!r}"
    if kind == "literal_error":
        return f"{path}: got {value!r}, expected one of {err['ctx']['expected']}"
    if kind in (checks.CHECK, "unknown_timezone"):  # semantic checks word value and expectation themselves
        return f"{path}: {err['msg']}"
    return f"{path}: {err['msg']} (got {value!r})"


def _valid_keys(loc: list[str]) -> list[str]:
    """Field names of the section at ``loc`` (e.g. ['train'] -> TrainConfig's fields)."""
    model: type[BaseModel] = Recipe
    for part in loc:
        field_info = model.model_fields.get(part)
        annotation = getattr(field_info, "annotation", None)
        candidates = [a for a in (annotation, *getattr(annotation, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return []
        model = candidates[0]
    return list(model.model_fields)
