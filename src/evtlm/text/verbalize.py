"""Events as text: pure, vectorised functions from canonical events (+ catalog) to sentences.

A user's history is ``actor_text + "".join(pieces)``. Every piece starts with one space and
ends with a full stop, so pieces can be tokenized one by one and their ids concatenated. The
first piece of a user (and every ``standalone`` piece) follows the actor directly and has no
reference to an earlier event; a later piece carries, per `VerbalizeConfig`:

- time: ``none``; ``relative``, the gap to the previous event in words from `RELATIVE_BUCKETS`
  ("Seconds later", "3 minutes later", "The next day", "2 weeks later"); or ``absolute``
  ("On 2017-11-25 08:26", in ``timezone``, formatted by ``absolute_format``);
- a session break: the first event of a later visit opens with ``session_phrase``
  ("New visit 2 days later: viewed …");
- the repeated-item shortcut: "added it to cart" when the item is the previous event's (never
  across a session break, where the item is named again);
- the verb of the action (``verbs``, templates over ``{item}``) and the item, rendered as
  ``id`` ("Product 1002"), ``title`` (the catalog title, the id form when there is none) or
  ``template`` (catalog fields, e.g. ``"{title} ({category}, £{price:.2f})"``);
- optionally what the event was worth (``amount``, on ``amount_actions``): a template over its
  price, quantity and price x quantity (`evtlm.ingest.money`), e.g. " bought Product 7 for £6.78.".

Worked examples (golden tests; `tests/test_verbalize.py` pins every mode):

>>> ev = finalize_events(pd.DataFrame({
...     "user_id": ["1"] * 5,
...     "timestamp": pd.to_datetime(["2017-11-25 08:26:00", "2017-11-25 08:29:10",
...         "2017-11-25 08:29:40", "2017-11-27 19:02:00", "2017-11-27 19:05:00"], utc=True),
...     "action": ["view", "cart", "view", "view", "purchase"],
...     "item_id": ["1002", "1002", "7", "7", "1002"],
...     "session_id": ["a", "a", "a", "b", "b"]}))
>>> cat = pd.DataFrame({"item_id": ["1002", "7"], "title": ["WHITE METAL LANTERN", "RED MUG"],
...                     "category": ["Lighting", "Kitchen"], "price": [3.39, 2.5]})
>>> print(verbalize_user(ev, cat, VerbalizeConfig()))
User 1 viewed Product 1002. 3 minutes later added it to cart. Seconds later viewed Product 7. New visit 2 days later: viewed Product 7. 3 minutes later bought Product 1002.
>>> print(verbalize_user(ev, cat, VerbalizeConfig(item="title", time="none")))
User 1 viewed WHITE METAL LANTERN. added it to cart. viewed RED MUG. New visit: viewed RED MUG. bought WHITE METAL LANTERN.
>>> cfg = VerbalizeConfig(item="template", item_template="{title} ({category}, £{price:.2f})",
...                       time="absolute", session_breaks=False, repeat_shortcut=False)
>>> print(verbalize_user(ev.head(2), cat, cfg))
User 1 on 2017-11-25 08:26 viewed WHITE METAL LANTERN (Lighting, £3.39). On 2017-11-25 08:29 added WHITE METAL LANTERN (Lighting, £3.39) to cart.
>>> text = verbalize_events(ev, cat, VerbalizeConfig())
>>> text.piece[3], text.standalone[3]
(' New visit 2 days later: viewed Product 7.', ' viewed Product 7.')
>>> action_label("cart", VerbalizeConfig())
'added to cart'
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from evtlm.errors import DataError, RecipeError, did_you_mean, format_rows
from evtlm.ingest.events import STRING_DTYPE, finalize_events  # noqa: F401  (finalize_events: worked examples)
from evtlm.recipe import ACTIONS, VerbalizeConfig
from evtlm.timeunits import NS_PER_DAY

__all__ = ["EventText", "RELATIVE_BUCKETS", "verbalize_events", "actor_text", "render_items",
           "action_label", "verbalize_user", "relative_phrases"]

MINUTE, HOUR, DAY = 60, 3600, 86_400
# Gaps in words: (upper bound in seconds, exclusive; unit in seconds or None; phrase). A gap
# falls in the first bucket whose bound exceeds it; with a unit, n = round(gap / unit), kept
# within the bucket (so always >= 2: the plural is always right).
RELATIVE_BUCKETS: tuple[tuple[float, int | None, str], ...] = (
    (60, None, "seconds later"),
    (90, None, "a minute later"),
    (59.5 * MINUTE, MINUTE, "{n} minutes later"),
    (90 * MINUTE, None, "an hour later"),
    (23.5 * HOUR, HOUR, "{n} hours later"),
    (2 * DAY, None, "the next day"),
    (13.5 * DAY, DAY, "{n} days later"),
    (59.5 * DAY, 7 * DAY, "{n} weeks later"),
    (730 * DAY, 30 * DAY, "{n} months later"),
    (float("inf"), 365 * DAY, "{n} years later"),
)
MAX_YEARS = 99
NO_ITEM = "an item"  # an event without an item id (item_id null)


@dataclass(frozen=True)
class EventText:
    """Text of each event, aligned to the events' index (see the module docstring)."""

    piece: pd.Series  # as it appears in a history, after the previous event's piece
    standalone: pd.Series  # with no reference to the previous event: the first one kept


def relative_phrases() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Every phrase `RELATIVE_BUCKETS` can produce, with per-bucket (offset, n_min, n_max).

    >>> phrases, offset, lo, hi = relative_phrases()
    >>> phrases[:4], phrases[offset[2]], phrases[offset[2] + hi[2] - lo[2]]
    (['seconds later', 'a minute later', '2 minutes later', '3 minutes later'], '2 minutes later', '59 minutes later')
    """
    phrases: list[str] = []
    offset, lo, hi = [], [], []
    lower = 0.0
    for upper, unit, text in RELATIVE_BUCKETS:
        offset.append(len(phrases))
        if unit is None:
            lo.append(0), hi.append(0), phrases.append(text)
        else:
            n_lo = max(2, int(np.floor(lower / unit + 0.5)))
            # the bound is exclusive: the largest n is the rounding of a gap just below it
            n_hi = MAX_YEARS if upper == float("inf") else int(np.floor(np.nextafter(upper / unit + 0.5, 0)))
            lo.append(n_lo), hi.append(n_hi)
            phrases.extend(text.format(n=n) for n in range(n_lo, n_hi + 1))
        lower = upper
    return phrases, np.array(offset), np.array(lo), np.array(hi)


_PHRASES, _OFFSET, _LO, _HI = relative_phrases()
_BOUNDS = np.array([b[0] for b in RELATIVE_BUCKETS])
_UNITS = np.array([b[1] or 1 for b in RELATIVE_BUCKETS], dtype=float)


def _relative_codes(gap_s: np.ndarray) -> np.ndarray:
    """Index into ``_PHRASES`` for each gap in seconds (negative gaps count as 0)."""
    gap = np.maximum(gap_s, 0.0)
    b = np.searchsorted(_BOUNDS, gap, side="right")
    n = np.clip(np.floor(gap / _UNITS[b] + 0.5).astype(np.int64), _LO[b], _HI[b])
    return _OFFSET[b] + n - _LO[b]


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


def _time_code_table(timestamps: pd.Series, cfg: VerbalizeConfig) -> tuple[np.ndarray, list[str]]:
    """Absolute times: one strftime per distinct value at the format's resolution (fast)."""
    fmt = cfg.absolute_format
    directives = set(re.findall(r"%-?([A-Za-z])", fmt))
    if directives & {"f"}:
        unit = None
    elif directives & {"S", "T", "X", "c", "s", "r"}:
        unit = "s"
    elif directives & {"M", "R"}:
        unit = "min"
    elif directives & {"H", "I", "p", "k", "l"}:
        unit = "h"
    else:
        unit = "D"
    try:
        local = timestamps.dt.tz_convert(cfg.timezone)
    except Exception as err:  # zoneinfo raises several types
        raise RecipeError(f"unknown time zone {cfg.timezone!r} ({err})", where="verbalize.timezone",
                          fix="use an IANA name such as 'UTC' or 'Asia/Shanghai'") from None
    local = local.dt.floor(unit) if unit else local
    codes, uniques = pd.factorize(local)
    return codes, list(pd.DatetimeIndex(uniques).strftime(fmt))


def _check_events(events: pd.DataFrame) -> None:
    missing = [c for c in ("user_id", "timestamp", "action", "item_id") if c not in events]
    if missing:
        raise DataError(f"events lack column(s) {missing}", where="verbalize_events",
                        fix="pass the canonical table (evtlm.ingest.events.finalize_events / evtlm.ingest.presets.load_event_log)")


def verbalize_events(events: pd.DataFrame, catalog: pd.DataFrame | None, cfg: VerbalizeConfig) -> EventText:
    """``piece`` and ``standalone`` text for every event (events in canonical order).

    Linear in the number of events: per-event work is Arrow/numpy array code; Python formats only
    per distinct item, time value and phrase.
    """
    _check_events(events)
    n = len(events)
    users = events["user_id"].astype(STRING_DTYPE)
    ucode, _ = pd.factorize(users)
    prev_same_user = np.zeros(n, bool)
    prev_same_user[1:] = ucode[1:] == ucode[:-1]
    ts = events["timestamp"]
    ts_ns = ts.to_numpy(dtype="datetime64[ns]").view(np.int64) if n else np.zeros(0, np.int64)
    gap_s = np.zeros(n)
    gap_s[1:] = (ts_ns[1:] - ts_ns[:-1]) / 1e9
    _check_order(ucode, prev_same_user, gap_s, events.index)
    act = events["action"]
    if isinstance(act.dtype, pd.CategoricalDtype) and list(act.cat.categories) == list(ACTIONS):
        action = act.cat.codes.to_numpy()  # the canonical dtype: codes are already action indices
    else:
        action = pd.Categorical(act.astype(object), categories=list(ACTIONS)).codes
    if (action < 0).any():
        bad = np.flatnonzero(action < 0)
        raise DataError(f"unknown action {events['action'].iloc[bad[0]]!r}", where=f"events, {format_rows(bad + 1)}",
                        fix=f"actions must be canonical: {', '.join(ACTIONS)}")

    # -- session breaks and the repeated-item shortcut
    if "session_id" in events:
        sess = events["session_id"].astype(STRING_DTYPE)
        changed = (sess != sess.shift()).fillna(False).to_numpy(bool) & sess.notna().to_numpy()
    else:
        changed = np.zeros(n, bool)
    brk = prev_same_user & changed & cfg.session_breaks
    items = events["item_id"].astype(STRING_DTYPE)
    same_item = prev_same_user & (items == items.shift()).fillna(False).to_numpy(bool) & ~brk
    rendered = _pa(render_items(items, catalog, cfg))
    item_text = pc.if_else(pa.array(same_item & cfg.repeat_shortcut), pa.scalar("it", pa.large_string()), rendered)

    # -- verb parts per action: "added " + item + " to cart"
    verbs = _verbs(cfg)
    split = [_split_template(verbs[a], "item", f"verbalize.verbs.{a}") for a in ACTIONS]
    pre = pa.array([s[0] for s in split], pa.large_string()).take(pa.array(action))
    post = pa.array([s[1] if len(s) == 2 else "" for s in split], pa.large_string()).take(pa.array(action))
    has_item = pa.array([len(s) == 2 for s in split]).take(pa.array(action))
    empty = pa.scalar("", pa.large_string())
    item_text = pc.if_else(has_item, item_text, empty)
    standalone_item = pc.if_else(has_item, rendered, empty)

    # -- time and break prefixes: small tables of strings, gathered per event
    first = ~prev_same_user
    phrase = cfg.session_phrase
    if cfg.time == "relative":
        words = np.array(_PHRASES, dtype=object)
        table = np.concatenate([" " + _cap(words) + " ", f" {phrase} " + words + ": ", [" "]])
        code = _relative_codes(gap_s) + np.where(brk, len(words), 0)
        alone = np.full(n, 2 * len(words))
    elif cfg.time == "absolute":
        tcode, stamps = _time_code_table(ts, cfg)
        st = np.array(stamps, dtype=object)
        table = np.concatenate([" On " + st + " ", f" {phrase} on " + st + ": ", " on " + st + " "])
        code = tcode + np.where(brk, len(st), 0)
        alone = tcode + 2 * len(st)
    else:
        table = np.array([" ", f" {phrase}: "], dtype=object)
        code = np.where(brk, 1, 0)
        alone = np.zeros(n, np.int64)
    code = np.where(first, alone, code)
    table_pa = pa.array(table, pa.large_string())
    dot = pa.scalar(".", pa.large_string())
    worth = _amount_text(events, catalog, action, cfg) if cfg.amount is not None else empty
    piece = pc.binary_join_element_wise(table_pa.take(pa.array(code)), pre, item_text, post, worth, dot, empty)
    if cfg.summaries and brk.any():  # the counts before each later visit open it
        piece = pc.if_else(pa.array(brk), pc.binary_join_element_wise(_summaries(ucode, action, ts_ns), piece, empty), piece)
    alone_txt = pc.binary_join_element_wise(table_pa.take(pa.array(alone)), pre, standalone_item, post, worth, dot, empty)
    return EventText(_to_series(piece, events.index), _to_series(alone_txt, events.index))


def _amount_text(events: pd.DataFrame, catalog: pd.DataFrame | None, action: np.ndarray, cfg: VerbalizeConfig) -> pa.Array:
    """Per event, ``verbalize.amount`` formatted with its price, quantity and amount (`evtlm.ingest.money`),
    or "" where the price is unknown or the action is not in ``verbalize.amount_actions``. Python
    formats each distinct (price, quantity) pair once.

    >>> ev = pd.DataFrame({"item_id": ["a", "b", "a"], "price": [2.5, 1.0, 2.5], "quantity": [2, 1, 2]})
    >>> cfg = VerbalizeConfig(amount=" ({quantity:g} for £{amount:.2f})")
    >>> _amount_text(ev, None, np.array([4, 0, 4]), cfg).to_pylist()  # 4: purchase, 0: view
    [' (2 for £5.00)', '', ' (2 for £5.00)']
    """
    from evtlm.ingest.money import event_money

    out = np.full(len(events), "", dtype=object)
    money = event_money(events, catalog)
    wanted = np.isin(action, [ACTIONS.index(a) for a in cfg.amount_actions])
    rows = np.flatnonzero(wanted & ~np.isnan(money.price)) if money is not None else np.zeros(0, np.int64)
    if rows.size:
        pairs = pd.MultiIndex.from_arrays([money.price[rows], money.quantity[rows]])
        codes, uniq = pd.factorize(pairs)
        texts = np.array([cfg.amount.format(price=p, quantity=q, amount=p * q) for p, q in uniq], dtype=object)
        out[rows] = texts[codes]
    return pa.array(out, pa.large_string())


def _summaries(ucode: np.ndarray, action: np.ndarray, ts_ns: np.ndarray) -> pa.Array:
    """Per event, " So far: 12 views, 3 carts, 1 purchase; last purchase 5 days ago." over the
    user's events strictly before it (``verbalize.summaries``), built with Arrow string kernels.

    >>> s = _summaries(np.array([0, 0, 0]), np.array([0, 4, 0]), np.array([0, 1, 3 * 86_400]) * 10**9)
    >>> s.to_pylist()[2]
    ' So far: 1 view, 0 carts, 1 purchase; last purchase 2 days ago.'
    """
    n = len(ucode)
    first = np.r_[True, ucode[1:] != ucode[:-1]] if n else np.zeros(0, bool)
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else np.zeros(0, np.int64)

    def before(flags: np.ndarray) -> np.ndarray:  # per event: how many of the user's earlier events are flagged
        cum = np.r_[0, np.cumsum(flags)]
        return cum[np.arange(n)] - cum[start]

    def text(x) -> pa.Array | pa.Scalar:
        if isinstance(x, (pa.Array, pa.Scalar)):
            return x
        if isinstance(x, str):
            return pa.scalar(x, pa.large_string())
        x = np.asarray(x)  # numpy str arrays go through object: pyarrow < 16 cannot convert them to large_string
        return pc.cast(pa.array(x), pa.large_string()) if x.dtype.kind in "iu" else pa.array(x.astype(object), pa.large_string())

    def join(*parts) -> pa.Array:
        return pc.binary_join_element_wise(*[text(p) for p in parts], text(""))

    def counted(k: np.ndarray, one: str, many: str) -> pa.Array:
        return join(k, np.where(k == 1, " " + one, " " + many))

    views, carts = before(action == ACTIONS.index("view")), before(action == ACTIONS.index("cart"))
    bought = action == ACTIONS.index("purchase")
    buys = before(bought)
    # the time of the last purchase strictly before each event: a running max within the user
    never = np.iinfo(np.int64).min
    last = np.r_[never, np.where(bought, ts_ns, never)[:-1]] if n else np.zeros(0, np.int64)
    last = pd.Series(np.where(first, never, last)).groupby(ucode).cummax().to_numpy() if n else last
    days = np.where(buys > 0, (ts_ns - np.where(buys > 0, last, ts_ns)) // NS_PER_DAY, 0)
    since = pc.if_else(pa.array(buys == 0), text("no purchase yet"),
                       pc.if_else(pa.array(days <= 0), text("last purchase today"),
                                  join("last purchase ", days, np.where(days == 1, " day ago", " days ago"))))
    return join(" So far: ", counted(views, "view", "views"), ", ", counted(carts, "cart", "carts"), ", ",
                counted(buys, "purchase", "purchases"), "; ", since, ".")


def _cap(words: np.ndarray) -> np.ndarray:
    return np.array([w[:1].upper() + w[1:] for w in words], dtype=object)


def _check_order(ucode: np.ndarray, prev_same_user: np.ndarray, gap_s: np.ndarray, index: pd.Index) -> None:
    """Events must be grouped by user and in time order within a user (the canonical order)."""
    back = np.flatnonzero(prev_same_user & (gap_s < 0))
    split_users = np.bincount(ucode[np.r_[True, ~prev_same_user[1:]]] if ucode.size else ucode).max(initial=0) > 1
    if back.size or split_users:
        where = f"events, {format_rows(back + 1)}" if back.size else "events (a user's rows are not contiguous)"
        raise DataError("events are not in canonical order (by user_id, then timestamp)", where=where,
                        fix="build the table with evtlm.ingest.events.finalize_events or sort it by user_id, timestamp")


def verbalize_user(events: pd.DataFrame, catalog: pd.DataFrame | None, cfg: VerbalizeConfig) -> str:
    """One user's text: the actor phrase followed by every piece (for previews and docs)."""
    users = events["user_id"].astype(STRING_DTYPE).unique()
    if len(users) != 1:
        raise DataError(f"verbalize_user needs the events of exactly one user, got {len(users)}",
                        where="verbalize_user", fix="select one user's rows first, e.g. events[events.user_id == '1']")
    text = verbalize_events(events, catalog, cfg)
    return actor_text(events["user_id"].iloc[:1], cfg).iloc[0] + "".join(text.piece.tolist())
