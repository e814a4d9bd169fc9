"""The recipe reference, generated from the schema (`evtlm.recipe`) so it cannot drift from it.

Every key of a recipe is listed with its type (constraints included), its default and what it
means. The meaning is the field's pydantic ``description`` when it has one, else the source
comments the schema carries for it (the comment lines right above the field and the comment at
the end of its line), so the schema stays the one place a setting is documented.

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
import ast
import difflib
import inspect
import io
import json
import re
import sys
import textwrap
import tokenize
import types
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from evtlm.errors import EvtlmError

__all__ = ["NOTES", "FieldDoc", "field_rows", "walk_sections", "recipe_reference", "replace_block", "stale_lines",
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


# ------------------------------------------------------------------------------ source comments
def _class_comments(cls: type) -> dict[str, str]:
    """field name -> the comments written for it in ``cls``'s own source (empty if unavailable).

    A field's comment is the block of comment-only lines directly above it plus the comment at
    the end of its own lines: ``max_steps: int | None = None  # overrides epochs when set``.
    """
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):  # built in a REPL or by create_model: no source to read
        return {}
    src = textwrap.dedent("".join(lines))
    comments: dict[int, str] = {}  # line number (1-based, within src) -> comment text
    code: set[int] = set()  # lines holding code tokens
    skip = {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER, tokenize.COMMENT}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in skip:
            code.update(range(tok.start[0], tok.end[0] + 1))
    out: dict[str, str] = {}
    for node in ast.parse(src).body[0].body:  # the class body
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        line = node.lineno - 1
        while line in comments and line not in code:
            above.insert(0, comments[line])
            line -= 1
        own = [comments[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1) if n in comments]
        out[node.target.id] = " ".join(above + own)
    return out


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """Comments of every field of ``model``, inherited ones included (the subclass wins)."""
    merged: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls is not BaseModel:
            merged.update(_class_comments(cls))
    return merged


# Meanings for keys the schema leaves uncommented. The schema's own description or comment always
# wins (add one there and the entry here is no longer used); a key here that the schema lost is
# an error (test_reference_notes_name_real_keys), so this table cannot outlive a field.
NOTES: dict[str, str] = {
    "name": "run name; defaults to the recipe file's stem (runs/<name>/)",
    "description": "free text, shown in the run card",
    "data.format": "file format; auto: from the extension (.csv, .tsv, .parquet, .jsonl, optionally .gz)",
    "data.delimiter": "field separator of CSV/TSV; None: sniffed",
    "data.has_header": "false for a header-less file (then give data.column_names)",
    "data.session_gap_minutes": "a gap longer than this starts a new visit (when the log has no session column)",
    "data.dedupe": "drop exact duplicate rows (counted in the data report)",
    "data.on_bad_rows": "error: stop at bad rows (file, rows, column, value); skip: drop and count them by reason",
    "data.catalog": "an item catalog file (titles, categories, prices) for `verbalize.item: title | template`",
    "data.columns.user": "raw column of the user id",
    "data.columns.item": "raw column of the item id (None: a log without items)",
    "data.columns.action": "raw column of the action (None: set data.constant_action)",
    "data.columns.timestamp": "raw column of the event time",
    "data.columns.session": "raw column of a session id (None: visits from data.session_gap_minutes)",
    "data.timestamp.unit": "auto: unix s/ms/us/ns told apart by magnitude, or ISO strings",
    "data.timestamp.timezone": "zone of naive timestamps",
    "data.catalog.path": "the catalog file",
    "data.catalog.item": "raw catalog column of the item id",
    "data.catalog.format": "as data.format",
    "data.catalog.delimiter": "as data.delimiter",
    "data.synthetic.users": "simulated users",
    "data.synthetic.items": "catalog size",
    "data.synthetic.categories": "item categories",
    "data.synthetic.days": "days simulated",
    "data.synthetic.start": "first simulated day (ISO date)",
    "data.synthetic.seed": "the same seed gives the same shop, byte for byte",
    "verbalize.actor": "how a history opens; fields: {user_id}",
    "verbalize.verbs": "phrase per action; {item} is the rendered item",
    "verbalize.item": "id: item_prefix + id; title: the catalog title; template: item_template over catalog fields",
    "verbalize.time": "none; absolute (absolute_format); relative gaps in words (\"3 minutes later\", \"the next day\")",
    "verbalize.absolute_format": "strftime format of `absolute` times",
    "verbalize.session_breaks": "mark the start of each later visit with session_phrase",
    "task.name": "what is predicted: next_action, next_item, purchase (yes/no), pretrain (LM on event text)",
    "split.method": "time: global cutoffs (train < valid < test windows); leave_one_out: last event per user is test",
    "split.valid_days": "length of the validation window before the test window (time split)",
    "split.test_days": "length of the test window at the end of the log (time split)",
    "model.when_unavailable": "error: stop when the base cannot be loaded (offline); scratch: build, pretrain and use "
                              "a small GPT-2 (model.scratch) with a tokenizer trained on the training events",
    "model.dtype": "dtype the base weights are loaded in; auto: the library's default",
    "model.scratch.n_layer": "transformer blocks of the scratch GPT-2",
    "model.scratch.n_head": "attention heads (must divide n_embd)",
    "model.scratch.n_embd": "hidden size",
    "model.scratch.n_positions": "longest context in tokens (keep >= task.max_tokens)",
    "model.scratch.vocab_size": "byte-level BPE vocabulary trained on the training-split text",
    "model.scratch.pretrain_epochs": "passes of causal-LM pretraining over the training event text",
    "model.scratch.pretrain_max_steps": "caps pretraining steps (overrides pretrain_epochs)",
    "model.scratch.pretrain_lr": "pretraining learning rate",
    "model.scratch.pretrain_batch_size": "pretraining rows per step",
    "lora.r": "LoRA rank",
    "lora.alpha": "LoRA scaling numerator (scale = alpha / r)",
    "lora.dropout": "dropout on the LoRA input",
    "lora.target_modules": "module names that get adapters; null: the base architecture's projections (GPT-2 c_attn, "
                           "c_proj, c_fc; Llama q/k/v/o_proj, gate/up/down_proj), recorded in the run's resolved recipe",
    "train.seed": "seeds data order, dropout and initialisation",
    "train.epochs": "passes over the training examples",
    "train.batch_size": "examples per process per step",
    "train.grad_accum": "steps accumulated per optimizer update (effective batch = batch_size x grad_accum x processes)",
    "train.lr": "peak learning rate (AdamW)",
    "train.weight_decay": "AdamW weight decay",
    "train.warmup_ratio": "share of optimizer steps with a linear warmup",
    "train.schedule": "learning-rate schedule after warmup",
    "train.max_grad_norm": "gradient clipping norm (None: no clipping)",
    "train.mixed_precision": "auto: bf16 on a GPU that supports it, else full precision",
    "train.batching": "length_grouped: similar lengths per batch; packed: several examples per row, kept apart; plain",
    "train.save_every": "optimizer steps between checkpoints (for --resume)",
    "train.log_every": "optimizer steps between log lines (train_log.csv, TensorBoard)",
    "decode.method": "auto: first-token softmax for closed sets, exact scoring or trie beam search for items",
    "decode.top_k": "items returned per user (next_item)",
    "decode.num_beams": "beams of the trie-constrained search (at least top_k)",
    "decode.batch_size": "prompts per forward pass",
    "decode.exclude_history_items": "next_item: never recommend an item already in the user's history",
    "eval.split": "split `evtlm evaluate` and the final evaluation score",
    "eval.k": "cut-offs of HR@K, NDCG@K, MRR@K",
    "eval.ece_bins": "bins of the expected calibration error and the reliability diagram",
    "eval.sasrec.dim": "embedding size",
    "eval.sasrec.max_len": "latest items per history",
    "eval.sasrec.blocks": "self-attention blocks",
    "eval.sasrec.heads": "attention heads",
    "eval.sasrec.dropout": "dropout",
    "eval.sasrec.lr": "Adam learning rate",
    "eval.sasrec.batch_size": "sequences per step",
    "eval.sasrec.full_softmax_items": "catalog size up to which the loss is a full softmax",
    "eval.sasrec.seed": "seed of initialisation and sampling",
    "eval.gbt.max_iter": "boosting iterations",
    "eval.gbt.learning_rate": "boosting learning rate",
    "eval.gbt.max_leaf_nodes": "leaves per tree",
    "eval.gbt.l2_regularization": "L2 penalty on leaf values",
    "eval.gbt.seed": "seed of the model",
    "eval.gbt_action.l2_regularization": "L2 penalty on leaf values",
    "eval.gbt_action.seed": "seed of the model (and of the early-stopping hold-out)",
    "output.dir": "where run directories go",
    "output.overwrite": "replace an existing run directory (otherwise an existing run is an error unless --resume)",
}


# ---------------------------------------------------------------------------------- rendering
def _sections(tp: Any) -> list[type[BaseModel]]:
    """The recipe sections (pydantic models) an annotation holds: ``X`` or ``X | None``."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    if get_origin(tp) in (Union, types.UnionType):
        return [s for a in get_args(tp) for s in _sections(a)]
    return []


def type_text(tp: Any, action_values: Sequence[str] = ()) -> str:
    """An annotation as short readable text; the action Literal is written ``action``.

    >>> type_text(dict[str, list[int]] | None)
    'dict[str, list[int]] | null'
    >>> type_text(Literal["a", "b"]), type_text(Literal["x", "y"], action_values=("x", "y"))
    ("'a' | 'b'", 'action')
    """
    origin, args = get_origin(tp), get_args(tp)
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    if origin is Literal:
        return "action" if action_values and tuple(args) == tuple(action_values) else " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_text(a, action_values) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_text(a, action_values) for a in args)}]"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "section"
    return getattr(tp, "__name__", str(tp))


_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def _constraints(metadata: list[Any]) -> str:
    """Numeric bounds of a field (``Field(ge=1, lt=1)``) as ``≥ 1, < 1``."""
    parts = [f"{sign} {getattr(m, attr)}" for m in metadata for attr, sign in _BOUNDS if getattr(m, attr, None) is not None]
    return ", ".join(parts)


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


def field_rows(model: type[BaseModel], prefix: str = "", action_values: Sequence[str] = ()) -> list[FieldDoc]:
    """The rows of one section (not descending into sub-sections; see `recipe_reference`)."""
    notes = _comments(model)
    rows = []
    for name, info in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        subs = _sections(info.annotation)
        if subs and info.default is None:  # an optional section: present or null
            typ = "section | null"
        elif subs:
            continue  # an always-present section: it gets its own table
        else:
            typ = type_text(info.annotation, action_values)
            bounds = _constraints(info.metadata)
            if bounds:  # put the bounds on the non-null part: "int ≥ 1 | null"
                head, sep, tail = typ.partition(" | null")
                typ = f"{head} {bounds}{sep}{tail}"
        default = default_text(info.get_default(call_default_factory=True))
        meaning = info.description or notes.get(name) or NOTES.get(key, "")
        rows.append(FieldDoc(key, typ, default, meaning))
    return rows


def walk_sections(model: type[BaseModel], prefix: str) -> list[tuple[str, type[BaseModel]]]:
    """Every section under ``model`` in schema order, depth first: (dotted prefix, model)."""
    out = [(prefix, model)]
    for name, info in model.model_fields.items():
        for sub in _sections(info.annotation):
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
    actions = tuple(getattr(sys.modules.get(recipe_model.__module__), "ACTIONS", ()))
    out = [
        f"<!-- generated from the schema (src/evtlm/recipe.py) by `{REGENERATE}`; "
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
        doc = " ".join((inspect.getdoc(model) or "").split("\n\n")[0].split())
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
