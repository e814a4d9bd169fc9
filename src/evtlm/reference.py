"""The recipe reference, generated from the schema (`evtlm.recipe`) so it cannot drift from it.

Every key of a recipe is listed with its type (constraints included), its default and what it
means, all read from the pydantic schema itself: ``model_json_schema()`` gives each field's type,
bounds, default and ``Field(description=...)``, and each section's own docstring (its JSON
schema ``description``) heads its table. No source is read: a setting is documented where it is
declared, in its ``Field``.

The README holds the reference between two markers; regenerate it after changing the schema::

    python -m evtlm.reference --write README.md     # rewrite the block in place
    python -m evtlm.reference --check README.md     # exit 1 when the block is stale (a test runs this)
    python -m evtlm.reference                       # print the block

>>> from evtlm.recipe import TrainConfig
>>> rows = {r.key: r for r in field_rows(TrainConfig, "train")}
>>> rows["train.max_steps"].type, rows["train.max_steps"].default
('int ≥ 1 | null', 'null')
>>> rows["train.max_steps"].meaning
'overrides epochs when set'
>>> rows["train.schedule"].type
"'cosine' | 'linear' | 'constant'"
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from evtlm.errors import EvtlmError

__all__ = ["FieldDoc", "field_rows", "walk_sections", "recipe_reference", "replace_block", "stale_lines",
           "MARK_START", "MARK_END"]

MARK_START = "<!-- recipe-reference:start -->"
MARK_END = "<!-- recipe-reference:end -->"
REGENERATE = "python -m evtlm.reference --write README.md"


class ReferenceError(EvtlmError):
    """The document has no (or a broken) reference block."""


@dataclass(frozen=True)
class FieldDoc:
    """One row of the reference: dotted key, type, default (as YAML-ish text) and meaning."""

    key: str
    type: str
    default: str
    meaning: str


# ---------------------------------------------------------------------------------- rendering
_JSON_TYPES = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "null"}
_BOUNDS = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"))


def type_text(prop: dict[str, Any], action_values: Sequence[str] = ()) -> str:
    """A field's JSON schema as short readable text; the action enum is written ``action``.

    >>> type_text({"anyOf": [{"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}}},
    ...                      {"type": "null"}]})
    'dict[str, list[int]] | null'
    >>> type_text({"enum": ["a", "b"]}), type_text({"enum": ["x", "y"]}, action_values=("x", "y"))
    ("'a' | 'b'", 'action')
    >>> type_text({"type": "integer", "minimum": 1})
    'int ≥ 1'
    """
    if "anyOf" in prop:
        return " | ".join(type_text(p, action_values) for p in prop["anyOf"])
    if "$ref" in prop:
        return "section"
    if "enum" in prop:
        values = tuple(prop["enum"])
        return "action" if action_values and values == tuple(action_values) else " | ".join(repr(v) for v in values)
    kind = prop.get("type")
    if kind == "array":
        text = f"list[{type_text(prop.get('items', {}), action_values)}]"
    elif kind == "object":
        keys = type_text(prop["propertyNames"], action_values) if "propertyNames" in prop else "str"
        values = prop.get("additionalProperties", True)
        text = f"dict[{keys}, {type_text(values, action_values) if isinstance(values, dict) else 'any'}]"
    else:
        text = _JSON_TYPES.get(kind, "any")
    bounds = ", ".join(f"{sign} {prop[key]}" for key, sign in _BOUNDS if key in prop)
    return f"{text} {bounds}" if bounds else text


def default_text(value: Any) -> str:
    """A default as it would be written in a recipe YAML (JSON flow style).

    >>> default_text(None), default_text("User {user_id}"), default_text(["c_attn", "c_fc"]), default_text(2e-4)
    ('null', '"User {user_id}"', '["c_attn", "c_fc"]', '0.0002')
    """
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, ensure_ascii=False)


def _is_section(prop: dict[str, Any]) -> bool:
    return "$ref" in prop or any("$ref" in p for p in prop.get("anyOf", ()))


def field_rows(model: type[BaseModel], prefix: str = "", action_values: Sequence[str] = ()) -> list[FieldDoc]:
    """The rows of one section (not descending into sub-sections; see `recipe_reference`), from
    its JSON schema. A default built by a factory (a list, a dict) is absent from the JSON schema:
    it is read from the field (``get_default``), which is the schema too."""
    props = model.model_json_schema()["properties"]
    rows = []
    for name, prop in props.items():
        key = f"{prefix}.{name}" if prefix else name
        if _is_section(prop):
            if "anyOf" not in prop:
                continue  # an always-present section: it gets its own table
            typ = "section | null"  # an optional section: present or null
        else:
            typ = type_text(prop, action_values)
        info = model.model_fields[name]
        default = default_text(info.get_default(call_default_factory=True) if "default" not in prop else prop["default"])
        rows.append(FieldDoc(key, typ, default, prop.get("description", "")))
    return rows


def walk_sections(model: type[BaseModel], prefix: str) -> list[tuple[str, type[BaseModel]]]:
    """Every section under ``model`` in schema order, depth first: (dotted prefix, model)."""
    out = [(prefix, model)]
    for name, info in model.model_fields.items():
        annotation = info.annotation
        for sub in (annotation, *getattr(annotation, "__args__", ())):  # X or X | None
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                out += walk_sections(sub, f"{prefix}.{name}" if prefix else name)
    return out


def _cell(text: str, code: bool = False) -> str:
    """Text safe inside a Markdown table cell (``<name>`` would vanish as an HTML tag outside code)."""
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if code else re.sub(r"<(?=[A-Za-z/!])", "&lt;", text)


def recipe_reference(recipe_model: type[BaseModel] | None = None) -> str:
    """The whole reference as Markdown: one table per section, every key with type, default, meaning.

    >>> text = recipe_reference()
    >>> "| `train.lr` | float > 0 | `0.0002` |" in text and "#### `data.synthetic`" in text
    True
    """
    if recipe_model is None:
        from evtlm.recipe import Recipe as recipe_model
    from evtlm.recipe import ACTIONS

    actions = tuple(ACTIONS)
    out = [
        f"<!-- generated from the schema (src/evtlm/recipe/) by `{REGENERATE}`; "
        "do not edit by hand: a test fails when this block is stale -->",
        "",
        "Every key a recipe YAML (or a `key.sub=value` override) may set. Unknown keys are errors. "
        + (f"`action` is one of {', '.join(f'`{a}`' for a in actions)}. " if actions else "")
        + "Bounds are inclusive (≥, ≤) or strict (>, <).",
    ]
    for prefix, model in walk_sections(recipe_model, ""):
        rows = field_rows(model, prefix, actions)
        if not rows:
            continue
        # the section's own docstring (JSON schema "description"; never a base class's)
        doc = " ".join((model.model_json_schema().get("description") or "").split("\n\n")[0].split())
        title = f"`{prefix}`" if prefix else "top level"
        out += ["", f"#### {title}" + (f" — {doc}" if doc and prefix else ""), "",
                "| key | type | default | meaning |", "|---|---|---|---|"]
        out += [f"| `{r.key}` | {_cell(r.type)} | `{_cell(r.default, code=True)}` | {_cell(r.meaning)} |" for r in rows]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------- the README block
def _split(text: str, where: str) -> tuple[str, str, str]:
    """(before the block incl. start marker, the block, end marker and after)."""
    start, end = text.find(MARK_START), text.find(MARK_END)
    if start < 0 or end < 0 or end < start or text.count(MARK_START) != 1 or text.count(MARK_END) != 1:
        raise ReferenceError("no recipe reference block (one start marker, then one end marker)", where=where,
                             fix=f"add the lines {MARK_START} and {MARK_END} where the reference goes, then run `{REGENERATE}`")
    head = text[: start + len(MARK_START)]
    return head, text[len(head):end], text[end:]


def replace_block(text: str, reference: str, where: str = "the document") -> str:
    """``text`` with the reference block replaced by ``reference``.

    >>> replace_block(f"a\\n{MARK_START}\\nold\\n{MARK_END}\\nb", "new\\n")
    'a\\n<!-- recipe-reference:start -->\\nnew\\n<!-- recipe-reference:end -->\\nb'
    """
    head, _, tail = _split(text, where)
    return head + "\n" + reference + tail


def stale_lines(text: str, recipe_model: type[BaseModel] | None = None, where: str = "the document") -> list[str]:
    """The differences between the document's block and the schema (empty when up to date).

    >>> block = recipe_reference()
    >>> stale_lines(replace_block(f"{MARK_START}\\n{MARK_END}", block))
    []
    >>> stale_lines(replace_block(f"{MARK_START}\\n{MARK_END}", block.replace("| `train.lr` |", "| `train.lr_old` |")))[:2]
    ['- | `train.lr_old` | float > 0 | `0.0002` | peak learning rate (AdamW) |', '+ | `train.lr` | float > 0 | `0.0002` | peak learning rate (AdamW) |']
    """
    _, current, _ = _split(text, where)
    wanted = recipe_reference(recipe_model)
    if current.strip("\n") == wanted.strip("\n"):
        return []
    diff = difflib.unified_diff(current.strip("\n").splitlines(), wanted.strip("\n").splitlines(), lineterm="", n=0)
    return [line[0] + " " + line[1:] for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evtlm.reference", description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", help="rewrite the reference block of FILE (e.g. README.md)")
    group.add_argument("--check", metavar="FILE", help="exit 1 when FILE's reference block is stale")
    args = parser.parse_args(argv)
    try:
        if args.write:
            path = Path(args.write)
            text = path.read_text(encoding="utf-8")
            new = replace_block(text, recipe_reference(), where=str(path))
            path.write_text(new, encoding="utf-8")
            print(f"{path}: recipe reference {'rewritten' if new != text else 'already up to date'}")
        elif args.check:
            path = Path(args.check)
            diff = stale_lines(path.read_text(encoding="utf-8"), where=str(path))
            if diff:
                print(f"{path}: the recipe reference is stale ({len(diff)} lines differ from the schema); "
                      f"regenerate it with `{REGENERATE}`", file=sys.stderr)
                print("\n".join(diff[:20]), file=sys.stderr)
                return 1
            print(f"{path}: the recipe reference matches the schema")
        else:
            sys.stdout.write(recipe_reference())
    except (OSError, EvtlmError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
