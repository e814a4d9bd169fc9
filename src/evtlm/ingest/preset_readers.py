"""Readers for public formats that a column mapping alone cannot express (see `evtlm.ingest.presets`).

Each reader takes the preset-resolved `DataConfig`, reads the raw table with the shared checks
of `evtlm.ingest.events.Ingest`, reshapes it with vectorised pandas (an action derived from the invoice
number, a time built from two columns, anonymous users), hands it back to the same canonical
mapping, and builds the item catalog the format carries.

>>> s = pd.Series(["17850.0", "12346", None], dtype="string")
>>> strip_float_suffix(s).tolist()
['17850', '12346', <NA>]
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from evtlm.errors import DataError
from evtlm.ingest.canonical import EventLog
from evtlm.ingest.events import Ingest
from evtlm.ingest.item_catalog import finalize_catalog, read_catalog
from evtlm.ingest.readers import BadRows, RawTable
from evtlm.recipe import CatalogConfig, DataConfig
from evtlm.ingest.values import clean_ids, to_number


def strip_float_suffix(ids: pd.Series) -> pd.Series:
    """'17850.0' -> '17850': ids written by a tool that read them as floats."""
    return ids.str.replace(r"\.0+$", "", regex=True)


def _with_columns(cfg: DataConfig, **columns) -> DataConfig:
    return cfg.model_copy(update={"columns": cfg.columns.model_copy(update=columns)})


# ------------------------------------------------------------------------------ online retail
def read_online_retail(cfg: DataConfig, base_dir: Path | None) -> EventLog:
    """UCI Online Retail: each invoice line is a purchase of ``Quantity`` at ``UnitPrice``.

    Invoices starting with ``C`` are cancellations: ``return`` events (``options.cancellations:
    returned``) or dropped and counted (``drop``). Lines without a CustomerID (guest checkouts,
    stock adjustments) cannot be attributed to a user: dropped and counted. The catalog maps
    StockCode -> its most frequent Description (``title``) and median positive UnitPrice.
    """
    opts, c = cfg.options, cfg.columns
    if opts["cancellations"] not in ("returned", "drop"):
        raise DataError(f"data.options.cancellations = {opts['cancellations']!r}", where="preset 'online_retail'",
                        fix="use 'returned' (cancellations become return events) or 'drop'")
    ingest = Ingest(cfg, base_dir)
    roles = ingest.roles() | {"data.options.description": opts["description"]}
    table = ingest.read(roles=roles)
    df = table.df
    catalog = _retail_catalog(df, c.item, opts["description"], c.extra.get("price"), c.session)
    skip = BadRows(table, "skip", ingest.report)
    df = skip.drop(df, clean_ids(df[c.user]).isna().to_numpy(), reason="no CustomerID (cannot attribute to a user)",
                   bad=False)
    df = df.assign(**{c.user: strip_float_suffix(df[c.user].astype("string").str.strip())})
    cancel = df[c.session].astype("string").str.strip().str.startswith("C").fillna(False).to_numpy()
    if opts["cancellations"] == "drop":
        df = skip.drop(df, cancel, reason="cancellation invoice (options.cancellations: drop)", bad=False)
        cancel = np.zeros(len(df), dtype=bool)
    df = df.assign(_action=np.where(cancel, "return", "purchase"))
    mapped = _with_columns(cfg, action="_action").model_copy(update={"actions": {}, "constant_action": None})
    events = ingest.to_events(replace(table, df=df), mapped)
    return ingest.finish([events], finalize_catalog(catalog, ingest.report))


def _retail_catalog(df: pd.DataFrame, item: str, title: str, price: str | None, invoice: str) -> pd.DataFrame:
    d = pd.DataFrame({"item_id": clean_ids(df[item]), "title": clean_ids(df[title])})
    d = d.dropna(subset=["item_id"])
    # the most frequent description of each stock code (a few codes carry typo'd variants)
    counts = d.dropna(subset=["title"]).value_counts(["item_id", "title"], sort=False).reset_index(name="n")
    counts = counts.sort_values(["item_id", "n", "title"], ascending=[True, False, True], kind="stable")
    catalog = pd.DataFrame({"item_id": d["item_id"].drop_duplicates()}).merge(
        counts.drop_duplicates("item_id")[["item_id", "title"]], on="item_id", how="left")
    if price:
        p = pd.DataFrame({"item_id": clean_ids(df[item]), "price": to_number(df[price])})
        sale = ~df[invoice].astype("string").str.startswith("C").fillna(False)
        p = p[sale & (p["price"] > 0)].dropna(subset=["item_id"])
        catalog = catalog.merge(p.groupby("item_id")["price"].median().rename("price"), on="item_id", how="left")
    return catalog


# --------------------------------------------------------------------------------- diginetica
def _digi_frame(ingest: Ingest, table: RawTable, session: str, user: str, timeframe: str,
                date: str) -> RawTable:
    """Add ``_user`` (anonymous -> 's<session>') and ``_time`` (eventdate + timeframe ms)."""
    df, bad = table.df, BadRows(table, ingest.cfg.on_bad_rows, ingest.report)
    day = pd.to_datetime(df[date].astype("string").str.strip(), format="%Y-%m-%d", errors="coerce")
    df = bad.drop(df, day.isna().to_numpy(), reason="unparseable eventdate", column=date,
                  expected="a day such as '2016-05-09'", fix="fix the values")
    ms = to_number(df[timeframe])
    df = bad.drop(df, ms.isna().to_numpy(), reason="non-numeric timeframe", column=timeframe,
                  expected="milliseconds since the session start", fix="fix the values")
    time = day.loc[df.index] + pd.to_timedelta(ms.loc[df.index], unit="ms")
    sid = clean_ids(df[session])
    uid = clean_ids(df[user])
    uid = uid.mask((uid == "NA").fillna(False))
    # a few sessions mix NA with a user id: the session's first known user owns all its rows
    known = uid.groupby(sid, sort=False).transform("first")
    user_of = uid.fillna(known).fillna("s" + sid)
    return replace(table, df=df.assign(_user=user_of, _time=time))


def read_diginetica(cfg: DataConfig, base_dir: Path | None) -> EventLog:
    """DIGINETICA views (+ optional purchases file, + product categories as the catalog).

    The time of an event is its ``eventdate`` (a day) plus ``timeframe`` milliseconds; events of
    an anonymous session (user ``NA``) belong to the user ``s<session_id>``, NA rows of a session
    that names its user elsewhere to that user.
    """
    c, opts = cfg.columns, cfg.options
    ingest = Ingest(cfg, base_dir)
    roles = {"data.columns.session": c.session or "session_id", "data.columns.user": c.user,
             "data.columns.item": c.item or "item_id", "data.options.timeframe": opts["timeframe"],
             "data.columns.timestamp": c.timestamp}
    views = _digi_frame(ingest, ingest.read(roles=roles), roles["data.columns.session"], c.user,
                        opts["timeframe"], c.timestamp)
    mapping = dict(user="_user", timestamp="_time", session=roles["data.columns.session"],
                   item=roles["data.columns.item"], extra={})
    frames = [ingest.to_events(views, _with_columns(cfg, **mapping))]
    if opts["purchases"]:
        proles = {f"purchases file {k}": k for k in ("sessionId", "userId", "itemId", "timeframe", "eventdate")}
        raw = ingest.read(opts["purchases"], proles, what="data.options.purchases")
        buys = _digi_frame(ingest, raw, "sessionId", "userId", "timeframe", "eventdate")
        bought = _with_columns(cfg, user="_user", timestamp="_time", session="sessionId", item="itemId",
                               extra={}).model_copy(update={"constant_action": "purchase"})
        frames.append(ingest.to_events(buys, bought))
    catalog = None
    cats = opts["categories"]
    if cats == "auto":
        cats = "product-categories.csv" if (ingest.path.parent / "product-categories.csv").is_file() else None
    if cats and cats != "none":
        catalog = read_catalog(CatalogConfig(path=cats, item="itemId", fields={"category": "categoryId"}),
                               ingest.path.parent, cfg.on_bad_rows, ingest.report)
    return ingest.finish(frames, catalog)


# ------------------------------------------------------------------------------------- rees46
def read_rees46(cfg: DataConfig, base_dir: Path | None) -> EventLog:
    """REES46 events, with the catalog (category, brand, price) taken from the events themselves.

    ``category`` is ``category_code`` ("electronics.smartphone"), or the numeric
    ``category_id`` where the code is empty; an item's brand is its last non-empty one, its
    price the median over its events.
    """
    ingest = Ingest(cfg, base_dir)
    roles = ingest.roles()
    names = {"category_code": "category_code", "category_id": "category_id", "brand": "brand"}
    table = ingest.read(roles=roles | {f"rees46 {k}": v for k, v in names.items()})
    df = table.df
    category = clean_ids(df["category_code"]).fillna(clean_ids(df["category_id"]))
    cat = pd.DataFrame({"item_id": clean_ids(df[cfg.columns.item]), "category": category,
                        "brand": clean_ids(df["brand"])}).dropna(subset=["item_id"])
    last = cat.groupby("item_id", sort=False)[["category", "brand"]].last()  # last non-null per column
    catalog = last.reset_index()
    price_col = cfg.columns.extra.get("price")
    if price_col:
        p = pd.DataFrame({"item_id": clean_ids(df[cfg.columns.item]), "price": to_number(df[price_col])})
        catalog = catalog.merge(p.groupby("item_id")["price"].median(), on="item_id", how="left")
    events = ingest.to_events(table)
    return ingest.finish([events], finalize_catalog(catalog, ingest.report))


def read_evtlm_shop(cfg: DataConfig, base_dir: Path | None) -> EventLog:
    """A file (or a folder of parts, ``evtlm simulate --part-users``) written by `evtlm simulate`,
    with its catalog when one lies beside it (`evtlm_shop_config`)."""
    from evtlm.ingest.events import read_events

    return read_events(evtlm_shop_config(cfg, base_dir), base_dir)


def evtlm_shop_config(cfg: DataConfig, base_dir: Path | None) -> DataConfig:
    """``cfg`` with the shop's catalog (``<stem>.catalog.csv`` beside the events) when the recipe
    names no other catalog and one is there."""
    from evtlm.ingest.simulate import catalog_path_for
    from evtlm.ingest.sources import find_sources

    if cfg.catalog is None and cfg.options.get("catalog", "auto") == "auto":
        parts = find_sources(cfg.path, base_dir)
        given = Path(cfg.path).expanduser()
        root = given if given.is_absolute() or base_dir is None else Path(base_dir) / given
        beside = catalog_path_for(parts[0].path if len(parts) == 1 and root.is_file() else root)
        if beside.is_file():
            cfg = cfg.model_copy(update={"catalog": CatalogConfig(path=str(beside))})
    return cfg
