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

This module assembles each event's piece from its parts and checks the canonical order; the
parts live beside it: time words in `evtlm.text.time_phrases`, the actor, verb and item templates
in `evtlm.text.templates`, the amount and visit-summary clauses in `evtlm.text.optional_clauses`.
It must not tokenize, split or build task examples (`evtlm.text.encode`, `evtlm.tasks`).

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

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from evtlm.errors import DataError, format_rows
from evtlm.ingest.events import STRING_DTYPE, finalize_events  # noqa: F401  (finalize_events: worked examples)
from evtlm.recipe import ACTIONS, VerbalizeConfig
from evtlm.text.optional_clauses import _amount_text, _summaries
from evtlm.text.templates import _pa, _split_template, _to_series, _verbs, action_label, actor_text, render_items
from evtlm.text.time_phrases import RELATIVE_BUCKETS, _PHRASES, _cap, _relative_codes, _time_code_table, relative_phrases
from evtlm.timeunits import NS_PER_SECOND

__all__ = ["EventText", "RELATIVE_BUCKETS", "verbalize_events", "actor_text", "render_items",
           "action_label", "verbalize_user", "relative_phrases"]


@dataclass(frozen=True)
class EventText:
    """Text of each event, aligned to the events' index (see the module docstring)."""

    piece: pd.Series  # as it appears in a history, after the previous event's piece
    standalone: pd.Series  # with no reference to the previous event: the first one kept


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
    gap_s[1:] = (ts_ns[1:] - ts_ns[:-1]) / NS_PER_SECOND
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
