"""The recipe's templates rendered: the actor phrase, the verb of each action and the item strings.

Owns parsing ``str.format`` templates (``verbalize.actor``, ``verbalize.verbs``,
``verbalize.item_template``), `action_label` (the next_action answer), `actor_text` and
`render_items` (each distinct item rendered once, then mapped to the events), and the
pandas <-> Arrow string helpers the event text is assembled with. Must not touch time phrases,
session breaks or the order of events (`evtlm.text.verbalize`).
"""

from __future__ import annotations

import string

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from evtlm.errors import DataError, RecipeError, did_you_mean
from evtlm.ingest.events import STRING_DTYPE
from evtlm.recipe import ACTIONS, VerbalizeConfig

NO_ITEM = "an item"  # an event without an item id (item_id null)


def _fields(template: str, where: str) -> list[tuple[str, str | None, str | None]]:
    """``(literal, field, spec)`` parts of a ``str.format`` template, or a RecipeError."""
    try:
        return [(lit, field, spec) for lit, field, spec, _ in string.Formatter().parse(template)]
    except ValueError as err:
        raise RecipeError(f"bad template {template!r} ({err})", where=where,
                          fix="write placeholders as {name} and a literal brace as {{ or }}") from None


def _split_template(template: str, field: str, where: str) -> tuple[str, str] | tuple[str]:
    """``"added {item} to cart"`` -> ``("added ", " to cart")``; no placeholder -> ``(text,)``."""
    parts = _fields(template, where)
    names = [f for _, f, _ in parts if f is not None]
    if any(n != field for n in names) or len(names) > 1:
        raise RecipeError(f"template {template!r} may only use {{{field}}} (once)", where=where,
                          fix=f"remove the other placeholders; found {names}")
    if not names:
        return ("".join(lit for lit, _, _ in parts),)
    i = next(k for k, (_, f, _) in enumerate(parts) if f is not None)
    before = "".join(lit for lit, _, _ in parts[: i + 1])
    return before, "".join(lit for lit, _, _ in parts[i + 1:])


def _verbs(cfg: VerbalizeConfig) -> dict[str, str]:
    """The recipe's verbs over the defaults: a recipe that sets some verbs keeps the others."""
    defaults = VerbalizeConfig.model_fields["verbs"].default_factory()
    return {**defaults, **cfg.verbs}


def action_label(action: str, cfg: VerbalizeConfig) -> str:
    """The bare verb phrase of an action, the answer of next_action: ``"added to cart"``."""
    verbs = _verbs(cfg)
    if action not in verbs:
        raise DataError(f"unknown action {action!r}", where="action_label", fix=did_you_mean(action, ACTIONS))
    return " ".join(verbs[action].replace("{item}", " ").split())


def _pa(series: pd.Series) -> pa.Array:
    return pa.array(series.astype(STRING_DTYPE), type=pa.large_string())


def _to_series(arr: pa.Array | pa.ChunkedArray, index: pd.Index) -> pd.Series:
    return pd.Series(pd.array(arr, dtype=STRING_DTYPE), index=index)


def actor_text(user_ids: pd.Series, cfg: VerbalizeConfig) -> pd.Series:
    """The actor phrase per row: ``"User {user_id}"`` -> ``"User 1"``.

    >>> actor_text(pd.Series(["1", "42"]), VerbalizeConfig()).tolist()
    ['User 1', 'User 42']
    """
    parts = _split_template(cfg.actor, "user_id", "verbalize.actor")
    if len(parts) == 1:
        return pd.Series(parts[0], index=user_ids.index, dtype=STRING_DTYPE)
    joined = pc.binary_join_element_wise(pa.scalar(parts[0], pa.large_string()), _pa(user_ids),
                                         pa.scalar(parts[1], pa.large_string()), pa.scalar("", pa.large_string()))
    return _to_series(joined, user_ids.index)


def _catalog_by_item(catalog: pd.DataFrame | None) -> pd.DataFrame | None:
    if catalog is None or "item_id" not in catalog:
        return None
    by_item = catalog.drop_duplicates("item_id")
    by_item.index = pd.Index(by_item["item_id"].astype(str).to_numpy(dtype=object))
    return by_item


def render_items(item_ids: pd.Series, catalog: pd.DataFrame | None, cfg: VerbalizeConfig) -> pd.Series:
    """Item strings as they appear in text; each distinct item is rendered once, then mapped.

    ``id``: ``item_prefix + " " + id``; ``title``: the catalog title (the id form when missing);
    ``template``: ``item_template`` over the catalog's fields (and ``item_id``); items missing from
    the catalog or with an empty field get the id form; ``token``: ``<item_ID>``, one added token
    per item (``model.item_tokens``). A null item id renders as "an item".

    >>> cat = pd.DataFrame({"item_id": ["7"], "title": ["RED MUG"], "price": [2.5]})
    >>> render_items(pd.Series(["7", "8"]), cat, VerbalizeConfig(item="title")).tolist()
    ['RED MUG', 'Product 8']
    >>> render_items(pd.Series(["7"]), cat, VerbalizeConfig(item="template", item_template="{title} £{price:.2f}")).tolist()
    ['RED MUG £2.50']
    >>> render_items(pd.Series(["7"]), None, VerbalizeConfig(item="token")).tolist()
    ['<item_7>']
    """
    codes, uniques = pd.factorize(item_ids.astype(STRING_DTYPE), use_na_sentinel=True)
    uniq = pd.Series(np.asarray(uniques, dtype=object), dtype=object)
    id_form = (cfg.item_prefix + " " if cfg.item_prefix else "") + uniq
    if cfg.item == "id":
        text = id_form
    elif cfg.item == "token":  # one added token per item (model.item_tokens): "<item_1002>"
        text = "<item_" + uniq + ">"
    else:
        by_item = _catalog_by_item(catalog)
        if cfg.item == "title":
            title = by_item["title"].reindex(uniq) if by_item is not None and "title" in by_item else None
            text = id_form if title is None else pd.Series(
                np.where(title.notna().to_numpy() & (title.astype(str).str.strip() != "").to_numpy(),
                         title.astype(str).to_numpy(), id_form.to_numpy()), dtype=object)
        else:
            text = _render_template(uniq, id_form, by_item, cfg.item_template)
    table = pa.array(np.append(text.to_numpy(dtype=object), NO_ITEM), type=pa.large_string())
    return _to_series(table.take(pa.array(np.where(codes < 0, len(text), codes))), item_ids.index)


def _render_template(uniq: pd.Series, id_form: pd.Series, by_item: pd.DataFrame | None, template: str) -> pd.Series:
    """``template`` formatted once per distinct item (a loop over items, never over events)."""
    where = "verbalize.item_template"
    names = sorted({f.split(".")[0].split("[")[0] for _, f, _ in _fields(template, where) if f is not None})
    if by_item is None:
        raise DataError(f"item template {template!r} needs a catalog, and this log has none", where=where,
                        fix="set data.catalog (or a preset with one), or use verbalize.item: id")
    columns = list(by_item.columns)
    for name in names:
        if name not in columns:
            raise DataError(f"item template field {{{name}}} is not a catalog column", where=where,
                            fix=f"use one of the catalog's fields: {', '.join(columns)}")
    rows = by_item[names].reindex(uniq)
    complete = rows.notna().all(axis=1).to_numpy()
    out = id_form.to_numpy(dtype=object).copy()
    records = rows[complete].to_dict("records")
    for k, rec in zip(np.flatnonzero(complete), records):
        try:
            out[k] = template.format(**rec)
        except (ValueError, TypeError, KeyError, IndexError) as err:
            bad = ", ".join(f"{n}={rec[n]!r}" for n in names)
            raise DataError(f"item template {template!r} cannot format item {uniq[k]!r} ({bad}): {err}",
                            where=where, fix="check the format specs against the catalog's column types "
                            "(e.g. {price:.2f} needs a numeric price)") from None
    return pd.Series(out, dtype=object)
