"""The optional clauses of an event's text: what it was worth and the summary opening a later visit.

Owns ``verbalize.amount`` (price, quantity and amount of an event, `evtlm.ingest.money`) and
``verbalize.summaries`` ("So far: 12 views, 3 carts, 1 purchase; last purchase 5 days ago."),
each one Arrow string array aligned to the events. `evtlm.text.verbalize` decides where they
go; these must not touch the rest of a piece (time, verb, item) or the order of events.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from evtlm.recipe import ACTIONS, VerbalizeConfig
from evtlm.timeunits import NS_PER_DAY


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
