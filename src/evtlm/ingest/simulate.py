"""The synthetic shop: a seeded generator of users and their multi-session journeys.

It is the embedded default data of the shipped recipes and the ground truth that tests (and
models) are checked against: the rules below are *planted*, with their numbers, so a test can
demand that a model learns them. Everything comes from one ``numpy.random.Generator`` seeded
by ``SyntheticConfig.seed``: the same seed gives the same shop, byte for byte (`write_shop`).

**World.** A catalog (`evtlm.ingest.shop_catalog`: titles from word lists, a category, a brand,
log-normal prices per category, a long-tailed popularity within each category) and users with
latent category preferences ``pref ~ Dirichlet(0.3)`` (affinity ``a = C * pref``, 1 = average),
a price sensitivity ``s ~ LogNormal(0, 0.5)`` and an engagement ``z ~ N(0, 1)``. Each user is
active in a window (joins uniformly over ``[-days/2, 0.85 days]``, stays ``7 + Exp(days)`` days)
and visits ``1 + Poisson(0.15 * exp(0.8 z) * window_days)`` times.

**Planted rules** (constants in this module and `evtlm.ingest.shop_journeys`; ``σ`` is the logistic
function; the shares quoted are measured on the default shop, seed 7):

1. *Category stickiness*: the next viewed item stays in the current category with probability
   ``CATEGORY_STAY = 0.7``; otherwise its category is redrawn from the user's preferences (so
   about 77% of consecutive views share a category). Within a category, popular items are
   viewed more (weight ``1 / rank**0.9``).
2. *Affinity and price drive carts*: a viewed item is carted with probability
   ``σ(-2.8 + 0.8 log a - 0.8 s·Δlog price + 0.3 z)`` (Δ: against the category median), about
   8% / 16% / 23% of views in the users' low / middle / high affinity terciles.
3. *Carts and affinity drive purchases*: while the cart is not empty, each step checks out with
   probability ``σ(-4.2 + 0.7·carts + 0.5·mean log a of carted items + 0.4 z)``; checkout buys
   every item in the cart, seconds apart. So a visit's purchase probability rises with its
   number of carts (0.46 / 0.67 / 0.89 for 1 / 2 / 3+ carts; 0.06 without, from rule 5) and
   with affinity; about 60% of carted items are bought in the same visit, the rest are removed
   (6% per step) or abandoned when the visit ends.
4. *Engaged users buy more*: ``z`` raises the visit rate, cart and checkout probabilities
   (Spearman correlation of ``z`` and a user's purchases about 0.7).
5. *Abandoned carts come back*: when a visit ends with items in the cart, the user's next visit
   opens with a re-view of the last one with probability ``REVISIT_P = 0.6``, bought right
   away with probability ``REVISIT_BUY_P = 0.5``.
6. *Returns*: a purchase is returned with probability ``RETURN_P = 0.08`` (doubled for items
   priced over 1.5x their category median), 1 to 21 days later, at the start of the user's next
   visit after that (none if there is no later visit: about 5% of purchases come back).
7. *Time*: gaps within a visit are seconds to minutes (views: median 35 s, capped at 20 min);
   visits are at least ``MIN_SESSION_GAP_S`` = 45 min apart (hours to days typically) and
   follow a daily rhythm (``HOURLY``: about 2% of events between 00:00 and 06:00 UTC, a peak at
   19-21 h). Visits end after each step with probability ``σ(-2.3 - 0.25 z)`` (0.75 right
   after a checkout): about 8 events per visit, 80 at most.

Together these make "will this user buy in the next 7 days" predictable from history (recent
activity, abandoned carts, past purchases: the count of a user's events in the last 14 days
alone ranks next week's buyers with ROC-AUC about 0.8) and give next-action / next-item
structure. Cost: the default 2,000 users (about 160k events) take well under a second; 5M
events (62k users) about 10 s, all numpy (`evtlm.ingest.shop_journeys` loops over steps, not visits).

>>> from evtlm.recipe import SyntheticConfig
>>> log = simulate_shop(SyntheticConfig(users=20, items=40, categories=4, days=14, seed=1))
>>> log.events.columns.tolist()
['user_id', 'timestamp', 'action', 'item_id', 'session_id', 'price']
>>> sorted(set(log.events["action"].astype(str))) <= ['cart', 'favorite', 'purchase', 'remove_from_cart', 'return', 'view']
True
>>> log.report.users
20
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from evtlm.ingest.canonical import STRING_DTYPE, EventLog, finalize_events
from evtlm.ingest.data_report import DataReport
from evtlm.recipe import ACTIONS, SyntheticConfig
from evtlm.ingest.shop_catalog import Catalog, build_catalog
from evtlm.ingest.shop_journeys import simulate_journeys
from evtlm.timeunits import SECONDS_PER_DAY, SECONDS_PER_HOUR

__all__ = ["Shop", "simulate_shop", "simulate_world", "simulate_parts", "write_shop", "write_shop_parts",
           "catalog_path_for"]

DAY = SECONDS_PER_DAY
PREF_ALPHA = 0.3
VISIT_RATE = 0.15  # visits per active day at z = 0
VISIT_RATE_ENGAGEMENT = 0.8
REVISIT_P = 0.6
REVISIT_BUY_P = 0.5
RETURN_P = 0.08
RETURN_PRICEY = 1.5  # items over 1.5x their category median are returned twice as often
MIN_SESSION_GAP_S = 45 * 60
# relative weight of each hour of the day (UTC) for visit starts: quiet nights, evening peak
HOURLY = np.array([0.15, 0.08, 0.05, 0.04, 0.04, 0.08, 0.25, 0.5, 0.8, 1.0, 1.0, 1.0,
                   1.1, 1.0, 0.9, 0.9, 1.0, 1.1, 1.3, 1.6, 1.8, 1.7, 1.2, 0.5])
VIEW, CART, REMOVE, FAVORITE, PURCHASE, RETURN = range(6)  # indices into ACTIONS
assert ACTIONS[PURCHASE] == "purchase" and ACTIONS[RETURN] == "return"


@dataclass
class Shop:
    """A simulated shop with its ground truth (for tests that check the planted rules)."""

    log: EventLog
    catalog: Catalog
    users: pd.DataFrame  # user_id, engagement, price_sensitivity, visit_rate, active_from, active_to (days)
    affinity: np.ndarray  # [U, C] C * pref: 1 = an average liking of the category


def simulate_shop(cfg: SyntheticConfig) -> EventLog:
    """The canonical event log (with a ``price`` column) and catalog of a simulated shop."""
    return simulate_world(cfg).log


def simulate_world(cfg: SyntheticConfig) -> Shop:
    """Simulate the shop and keep the latent truth (affinities, engagement) beside the log."""
    rng = np.random.default_rng(cfg.seed)
    catalog = build_catalog(rng, cfg.items, cfg.categories)
    return _simulate_users(cfg, rng, catalog, cfg.users, first_user=0)


def simulate_parts(cfg: SyntheticConfig, users_per_part: int) -> Iterator[EventLog]:
    """The shop of ``cfg.users`` users as parts of ``users_per_part`` users each, one at a time
    (memory: one part), for shops too large to hold: 1M users are about 80M events.

    Every part shares the catalog of `simulate_shop` (drawn first from ``seed``); part k draws
    its users from its own generator, seeded by ``(seed, k)``, and numbers them on from the
    parts before. So the parts are deterministic and independent of each other, though not the
    same users as a one-piece shop of the same seed.
    """
    catalog = build_catalog(np.random.default_rng(cfg.seed), cfg.items, cfg.categories)
    for k, first in enumerate(range(0, cfg.users, users_per_part)):
        n = min(users_per_part, cfg.users - first)
        yield _simulate_users(cfg, np.random.default_rng([cfg.seed, k]), catalog, n, first_user=first).log


def _simulate_users(cfg: SyntheticConfig, rng: np.random.Generator, catalog: Catalog, U: int,
                    first_user: int) -> Shop:
    """``U`` users (ids ``first_user + 1`` on) and their journeys in the shop of ``catalog``."""
    C, horizon = cfg.categories, cfg.days * DAY
    pref = rng.dirichlet(np.full(C, PREF_ALPHA), size=U)  # [U, C]
    sens = rng.lognormal(0.0, 0.5, U)
    z = rng.normal(0.0, 1.0, U)
    rate = VISIT_RATE * np.exp(VISIT_RATE_ENGAGEMENT * z)
    join = rng.uniform(-0.5, 0.85, U) * cfg.days
    leave = np.minimum(join + 7 + rng.exponential(cfg.days, U), cfg.days)
    join = np.clip(join, 0, cfg.days - 1)
    leave = np.maximum(leave, join + 1)  # at least a day of activity
    n_visits = 1 + rng.poisson(rate * (leave - join))
    sess_user = np.repeat(np.arange(U), n_visits)  # [S] sessions grouped by user
    # a day inside the window, then an hour from the daily rhythm and a minute inside that hour
    day = np.floor(join[sess_user] + rng.random(sess_user.size) * (leave - join)[sess_user])
    hour = rng.choice(24, size=sess_user.size, p=HOURLY / HOURLY.sum())
    raw_start = (day * DAY + hour * SECONDS_PER_HOUR + rng.integers(0, SECONDS_PER_HOUR, sess_user.size)).astype(np.int64)
    order = np.lexsort((raw_start, sess_user))
    sess_user, raw_start = sess_user[order], raw_start[order]

    ev = simulate_journeys(rng, catalog, sess_user, np.log(C * pref), sens, z)
    ev = _add_revisits(rng, ev, sess_user)
    start, keep = _place_sessions(ev, sess_user, raw_start, horizon)
    ev = {k: v[keep[ev["sess"]]] for k, v in ev.items()}
    ev["t"] = start[ev["sess"]] + ev["t"]
    ev = _add_returns(rng, ev, catalog, sess_user, start, keep)
    events = _to_frame(ev, catalog, sess_user, keep, cfg, first_user)
    report = DataReport(source=f"synthetic shop (seed {cfg.seed}, {U} users, {cfg.items} items, {cfg.days} days)")
    report.rows_read = len(events)
    report.summarize(events)
    report.catalog_items = len(catalog.table)
    users = pd.DataFrame({"user_id": (np.arange(U) + first_user + 1).astype(str), "engagement": z,
                          "price_sensitivity": sens, "visit_rate": rate, "active_from": join,
                          "active_to": leave})
    return Shop(EventLog(events, catalog.table.copy(), report), catalog, users, C * pref)


def _add_revisits(rng: np.random.Generator, ev: dict, sess_user: np.ndarray) -> dict:
    """Rule 5: a visit after one that abandoned its cart may open with a re-view (and a buy)."""
    S = sess_user.size
    prev_abandoned = np.full(S, -1)
    prev_abandoned[1:] = np.where(sess_user[1:] == sess_user[:-1], ev["abandoned"][:-1], -1)
    revisit = (prev_abandoned >= 0) & (rng.random(S) < REVISIT_P)
    buy = revisit & (rng.random(S) < REVISIT_BUY_P)
    s_view, s_buy = np.flatnonzero(revisit), np.flatnonzero(buy)
    buy_gap = rng.integers(20, 120, S)  # seconds from the re-view to the purchase
    shift = np.where(revisit, np.where(buy, buy_gap, 0) + rng.integers(15, 90, S), 0)
    add = {
        "sess": np.concatenate([s_view, s_buy]),
        "step": np.concatenate([np.full(s_view.size, -2), np.full(s_buy.size, -1)]),
        "t": np.concatenate([np.zeros(s_view.size, np.int64), buy_gap[s_buy]]),
        "action": np.concatenate([np.full(s_view.size, VIEW), np.full(s_buy.size, PURCHASE)]),
        "item": prev_abandoned[np.concatenate([s_view, s_buy])],
    }
    out = {k: np.concatenate([add[k], ev[k] + (shift[ev["sess"]] if k == "t" else 0)]) for k in add}
    order = np.lexsort((out["step"], out["sess"]))
    return {k: v[order] for k, v in out.items()}


def _place_sessions(ev: dict, sess_user: np.ndarray, raw_start: np.ndarray, horizon: int):
    """Start times that keep each user's visits ``MIN_SESSION_GAP_S`` apart (rule 7).

    ``start_k = max(raw_k, start_{k-1} + dur_{k-1} + gap)`` is a running maximum: with ``P_k``
    the user's cumulative ``dur + gap`` before visit k, ``start_k = P_k + cummax(raw_j - P_j)``.
    Visits pushed past the horizon are dropped (``keep``).
    """
    dur = np.zeros(sess_user.size, np.int64)
    np.maximum.at(dur, ev["sess"], ev["t"])
    step = pd.Series(dur + MIN_SESSION_GAP_S)
    by_user = step.groupby(sess_user)
    P = (by_user.cumsum() - step).to_numpy()  # exclusive cumulative sum per user
    start = P + pd.Series(raw_start - P).groupby(sess_user).cummax().to_numpy()
    return start, start + dur < horizon


def _add_returns(rng, ev: dict, catalog: Catalog, sess_user, start, keep) -> dict:
    """Rule 6: some purchases come back at the start of a later visit."""
    bought = np.flatnonzero(ev["action"] == PURCHASE)
    item = ev["item"][bought]
    p = RETURN_P * np.where(catalog.rel_log_price[item] > np.log(RETURN_PRICEY), 2.0, 1.0)
    ret = bought[rng.random(bought.size) < p]
    due = ev["t"][ret] + rng.integers(1 * DAY, 21 * DAY, ret.size)
    user = sess_user[ev["sess"][ret]]
    kept = np.flatnonzero(keep)
    span = int(start.max(initial=0)) + 30 * DAY  # key = user * span + time sorts by (user, time)
    keys = sess_user[kept].astype(np.int64) * span + start[kept]
    pos = np.searchsorted(keys, user.astype(np.int64) * span + due)
    ok = pos < kept.size
    ok[ok] = sess_user[kept[pos[ok]]] == user[ok]
    target = kept[pos[ok]]
    add = {"sess": target, "step": np.full(target.size, -3), "t": start[target] - rng.integers(30, 300, target.size),
           "action": np.full(target.size, RETURN), "item": ev["item"][ret[ok]]}
    return {k: np.concatenate([ev[k], add[k]]) for k in ("sess", "step", "t", "action", "item")}


def _to_frame(ev: dict, catalog: Catalog, sess_user: np.ndarray, keep: np.ndarray,
              cfg: SyntheticConfig, first_user: int = 0) -> pd.DataFrame:
    """Canonical events: ids as strings, ``user-visit`` session ids, the item's price."""
    order = np.lexsort((ev["step"], ev["t"], ev["sess"]))
    ev = {k: v[order] for k, v in ev.items()}
    visit_no = np.zeros(sess_user.size, np.int64)  # 1-based visit number among kept visits
    visit_no[keep] = pd.Series(np.ones(int(keep.sum()), np.int64)).groupby(sess_user[keep]).cumsum().to_numpy()
    # strings are built once per visit and gathered per event with Arrow's take (fast, compact)
    user_str = pd.Series(sess_user + first_user + 1, dtype="int64").astype(str).astype(STRING_DTYPE)
    session_str = user_str + "-" + pd.Series(visit_no).astype(str).astype(STRING_DTYPE)
    item_str = catalog.table["item_id"].astype(STRING_DTYPE)
    t0 = pd.Timestamp(cfg.start)  # naive dates are UTC
    t0 = (t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")).as_unit("ns")
    frame = pd.DataFrame({
        "user_id": user_str.take(ev["sess"]).reset_index(drop=True),
        "timestamp": t0 + pd.to_timedelta(ev["t"], unit="s"),
        "action": pd.Categorical.from_codes(ev["action"], categories=list(ACTIONS)),
        "item_id": item_str.take(ev["item"]).reset_index(drop=True),
        "session_id": session_str.take(ev["sess"]).reset_index(drop=True),
        "price": catalog.table["price"].to_numpy()[ev["item"]],
    })
    return finalize_events(frame)


def catalog_path_for(path: str | Path) -> Path:
    """Where `write_shop` puts the catalog: ``shop.csv`` -> ``shop.catalog.csv`` (also for .gz)."""
    p = Path(path)
    stem = p.name.removesuffix(".gz").removesuffix(".csv")
    return p.with_name(f"{stem}.catalog.csv")


def write_shop(log: EventLog, path: str | Path) -> tuple[Path, Path]:
    """Write events (``user_id,timestamp,action,item_id,session_id,price``; ISO UTC times) and the
    catalog beside them (`catalog_path_for`). Same log, same bytes: nothing time- or
    machine-dependent ends up in the files (``.gz`` is written with a zero mtime). Returns both
    paths. Arrow's CSV writer does 5M rows in seconds where ``DataFrame.to_csv`` takes a minute.
    """
    import gzip

    import pyarrow.csv as pacsv

    path = Path(path)
    table = _events_table(log.events)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip.GzipFile(path, "wb", compresslevel=6, mtime=0) if path.suffix == ".gz" else open(path, "wb")) as fh:
        fh.write((",".join(table.column_names) + "\n").encode())
        # never quoted: ids and ISO times hold no delimiter (Arrow raises if one ever does)
        pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    cat_path = catalog_path_for(path)
    if log.catalog is not None:
        log.catalog.to_csv(cat_path, index=False, float_format="%.2f", lineterminator="\n")
    return path, cat_path


def _events_table(ev: pd.DataFrame):
    """The written columns as an Arrow table: ISO UTC times, prices to the cent."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # "2024-01-05 08:26:13" (Arrow's cast, fast) -> "2024-01-05T08:26:13Z"
    seconds = pa.array(ev["timestamp"].dt.tz_convert(None).to_numpy().astype("datetime64[s]"))
    iso = pc.binary_join_element_wise(pc.binary_replace_slice(seconds.cast(pa.string()), 10, 11, "T"),
                                      pa.scalar("Z"), pa.scalar(""))
    price = ev["price"].to_numpy(dtype=float) if "price" in ev else np.full(len(ev), np.nan)
    return pa.table({
        "user_id": pa.array(ev["user_id"]), "timestamp": iso,
        "action": pa.array(ev["action"]).cast(pa.string()),
        "item_id": pa.array(ev["item_id"]), "session_id": pa.array(ev["session_id"]),
        "price": pa.array(np.round(price, 2)),
    })


def write_shop_parts(cfg: SyntheticConfig, folder: str | Path, users_per_part: int, fmt: str = "parquet",
                     progress: bool = False) -> tuple[Path, Path, DataReport]:
    """Write `simulate_parts` as a folder of files, ``part-00000.parquet`` (or ``.csv.gz``) on,
    and the catalog beside the folder (``<folder>.catalog.csv``, where the ``evtlm_shop`` preset
    and `catalog_path_for` look). Memory: one part. Returns the folder, the catalog path and a
    report adding up every part (events, users, visits, time span).
    """
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    if fmt not in ("parquet", "csv.gz", "csv"):
        raise ValueError(f"fmt must be parquet, csv.gz or csv, got {fmt!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*"):
        old.unlink()  # a shorter rewrite must not leave the last run's parts behind
    report = DataReport(source=f"synthetic shop (seed {cfg.seed}, {cfg.users} users in parts of "
                        f"{users_per_part}, {cfg.items} items, {cfg.days} days)")
    parts = -(-cfg.users // users_per_part)
    counts: dict[str, int] = {}
    items: np.ndarray = np.array([], dtype=object)
    catalog = None
    bar = tqdm(total=cfg.users, unit="user", desc="simulate", disable=not progress)
    for k, log in enumerate(simulate_parts(cfg, users_per_part)):
        path = folder / f"part-{k:05d}.{fmt}"
        if fmt == "parquet":
            pq.write_table(_events_table(log.events), path)
        else:
            write_shop(EventLog(log.events, None, log.report), path)
        r = log.report
        report.rows_read += r.rows_read
        report.rows_kept += r.rows_kept
        report.users += r.users
        report.sessions += r.sessions
        for a, n in r.events_per_action.items():
            counts[a] = counts.get(a, 0) + n
        report.time_start = min(filter(None, (report.time_start, r.time_start)), default=None)
        report.time_end = max(filter(None, (report.time_end, r.time_end)), default=None)
        items = np.union1d(items, log.events["item_id"].unique().astype(object))
        catalog = log.catalog
        bar.update(min(users_per_part, cfg.users - k * users_per_part))
        bar.set_postfix(events=f"{report.rows_kept:,}", part=f"{k + 1}/{parts}")
    bar.close()
    report.events_per_action = {a: counts[a] for a in ACTIONS if counts.get(a)}
    report.items, report.catalog_items = len(items), len(catalog) if catalog is not None else 0
    cat_path = catalog_path_for(folder)
    if catalog is not None:
        catalog.to_csv(cat_path, index=False, float_format="%.2f", lineterminator="\n")
    return folder, cat_path, report
