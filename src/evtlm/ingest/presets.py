"""Known public log formats, and `load_event_log`: the one entry point the pipeline calls.

A preset is a set of `DataConfig` defaults (column mapping, action vocabulary, time unit, date
range) plus, for layouts a mapping cannot express, a custom reader (`evtlm.ingest.preset_readers`).
Whatever a recipe sets explicitly overrides the preset (pydantic's ``model_fields_set``,
recursively; dict fields such as ``actions`` or ``options`` are merged key by key).

=============  ==============================================================================
preset         file
=============  ==============================================================================
evtlm_shop     a shop written by ``evtlm simulate`` (catalog read from beside it)
taobao         Tianchi UserBehavior.csv (no header: user_id,item_id,category_id,behavior,ts)
online_retail  UCI Online Retail (invoice lines are purchases, ``C`` invoices returns)
yoochoose      RecSys 2015 clicks (tab-separated SessionId, ItemId, Time); sessions are users
diginetica     CIKM Cup 2016 train-item-views (+ train-purchases, product-categories)
retailrocket   RetailRocket events.csv (timestamp ms, visitorid, event, itemid, transactionid)
rees46         REES46 multi-category store (event_time, event_type, product_id, …, user_session)
=============  ==============================================================================

>>> from evtlm.recipe import DataConfig
>>> cfg = resolve_data_config(DataConfig(preset="taobao", path="UserBehavior.csv", start="2017-11-27"))
>>> cfg.has_header, cfg.actions["pv"], cfg.start, cfg.end     # the recipe's start wins
(False, 'view', '2017-11-27', '2017-12-04 00:00:00')

A preset name or option that does not exist fails when the recipe loads (`evtlm.recipe.checks`):

>>> from evtlm.recipe.checks import preset_problem
>>> preset_problem("taobo")
"got 'taobo', expected a known preset: did you mean 'taobao'? valid: 'diginetica', 'evtlm_shop', 'online_retail', 'rees46', 'retailrocket', 'taobao', 'yoochoose'"

A file whose columns do not fit the mapping may still be a known format read without its preset:
`suggest_preset` recognises it from the fields of its first line (the message of
`evtlm.ingest.events.check_columns` leads with the suggestion).

>>> matching_presets("1,2268318,2520377,pv,1511544070".split(","), header=True)
['taobao']
>>> matching_presets(["timestamp", "visitorid", "event", "itemid", "transactionid"])
['retailrocket']
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from evtlm.errors import DataError, did_you_mean
from evtlm.ingest.canonical import EventLog
from evtlm.ingest.events import read_events
from evtlm.recipe import DataConfig

__all__ = ["Preset", "PRESETS", "get_preset", "resolve_data_config", "load_event_log", "matching_presets",
           "suggest_preset"]


@dataclass(frozen=True)
class Preset:
    """Defaults for one public format; ``options`` maps name -> (default, meaning)."""

    name: str
    description: str
    config: dict[str, Any]
    options: dict[str, tuple[Any, str]] = field(default_factory=dict)
    reader: Callable[[DataConfig, Path | None], EventLog] | None = None


def _lazy(name: str) -> Callable[[DataConfig, Path | None], EventLog]:
    def read(cfg: DataConfig, base_dir: Path | None) -> EventLog:
        from evtlm.ingest import preset_readers

        return getattr(preset_readers, name)(cfg, base_dir)

    read.__name__ = name
    return read


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "evtlm_shop",
            "A shop written by `evtlm simulate` (user_id,timestamp,action,item_id,session_id,price; "
            "ISO UTC times; canonical actions); its catalog <stem>.catalog.csv is read from beside it",
            dict(
                columns=dict(user="user_id", item="item_id", action="action", timestamp="timestamp",
                             session="session_id", extra={"price": "price"}),
                timestamp=dict(unit="iso"),
            ),
            options={"catalog": ("auto", "'auto': read <stem>.catalog.csv when it lies beside the events; "
                                 "'none': no catalog")},
            reader=_lazy("read_evtlm_shop"),
        ),
        Preset(
            "taobao",
            "Alibaba Tianchi UserBehavior: pv/cart/fav/buy, unix seconds, 2017-11-25 .. 2017-12-03 "
            "China time (events outside that documented range are dropped and counted)",
            dict(
                delimiter=",", has_header=False,
                column_names=["user_id", "item_id", "category_id", "behavior", "timestamp"],
                columns=dict(user="user_id", item="item_id", action="behavior", timestamp="timestamp",
                             extra={"category": "category_id"}),
                timestamp=dict(unit="s", timezone="Asia/Shanghai"),
                actions={"pv": "view", "cart": "cart", "fav": "favorite", "buy": "purchase"},
                # end is exclusive: 2017-12-03 23:59:59 China time is the last second kept
                start="2017-11-25 00:00:00", end="2017-12-04 00:00:00",
            ),
        ),
        Preset(
            "online_retail",
            "UCI Online Retail invoice lines: purchases, cancellations (invoices starting with C) as "
            "returns; rows without a CustomerID dropped and counted; catalog from the descriptions",
            dict(
                columns=dict(user="CustomerID", item="StockCode", action=None, timestamp="InvoiceDate",
                             session="InvoiceNo", extra={"quantity": "Quantity", "price": "UnitPrice"}),
                timestamp=dict(unit="iso", timezone="Europe/London"),
            ),
            options={"cancellations": ("returned", "'returned': C-invoices become `return` events; 'drop': "
                                       "dropped and counted"),
                     "description": ("Description", "the column holding product titles (catalog)")},
            reader=_lazy("read_online_retail"),
        ),
        Preset(
            "yoochoose",
            "RecSys Challenge 2015 clicks: tab-separated SessionId, ItemId, Time (unix seconds); every "
            "click is a view and each session is its own user",
            dict(
                delimiter="\t",
                columns=dict(user="SessionId", item="ItemId", action=None, timestamp="Time", session="SessionId"),
                constant_action="view", timestamp=dict(unit="s"),
            ),
        ),
        Preset(
            "diginetica",
            "CIKM Cup 2016 DIGINETICA views (session_id;user_id;item_id;timeframe;eventdate): time = "
            "eventdate + timeframe ms; anonymous sessions are their own user ('s<session>')",
            dict(
                delimiter=";",
                columns=dict(user="user_id", item="item_id", action=None, timestamp="eventdate",
                             session="session_id"),
                constant_action="view",
            ),
            options={"purchases": (None, "train-purchases.csv (beside the views file) to add purchase events"),
                     "categories": ("auto", "product-categories.csv for the catalog's category; 'auto': used "
                                    "when it lies beside the views file, 'none': no catalog"),
                     "timeframe": ("timeframe", "the column of ms since the session start")},
            reader=_lazy("read_diginetica"),
        ),
        Preset(
            "retailrocket",
            "RetailRocket events.csv: timestamp (ms), visitorid, event (view/addtocart/transaction), "
            "itemid, transactionid",
            dict(
                columns=dict(user="visitorid", item="itemid", action="event", timestamp="timestamp",
                             extra={"transaction_id": "transactionid"}),
                timestamp=dict(unit="ms"),
                actions={"view": "view", "addtocart": "cart", "transaction": "purchase"},
            ),
        ),
        Preset(
            "rees46",
            "REES46 multi-category store: event_time ('2019-10-01 00:00:00 UTC'), event_type "
            "(view/cart/remove_from_cart/purchase), product_id, category_code, brand, price, user_id, "
            "user_session; catalog from category_code (else category_id), brand and price",
            dict(
                columns=dict(user="user_id", item="product_id", action="event_type", timestamp="event_time",
                             session="user_session", extra={"price": "price"}),
                timestamp=dict(format="%Y-%m-%d %H:%M:%S %Z"),
                actions={"view": "view", "cart": "cart", "remove_from_cart": "remove_from_cart",
                         "purchase": "purchase"},
            ),
            reader=_lazy("read_rees46"),
        ),
    ]
}


def _mapped(cfg: dict[str, Any]) -> list[str]:
    """The raw columns a preset's mapping reads (its roles and extras)."""
    c = cfg.get("columns", {})
    cols = [c.get(k) for k in ("user", "item", "action", "timestamp", "session")] + list(c.get("extra", {}).values())
    return [col for col in cols if col]


def _fits_row(preset: Preset, fields: list[str]) -> bool:
    """``fields`` (one data line) has the shape of a header-less preset's rows."""
    cfg = preset.config
    names = cfg["column_names"]
    if len(fields) != len(names):
        return False
    row = dict(zip(names, (f.strip() for f in fields)))
    c = cfg["columns"]
    if not all(row.get(c[k]) for k in ("user", "item", "timestamp") if c.get(k)):
        return False
    if c.get("action") and cfg.get("actions") and row[c["action"]] not in cfg["actions"]:
        return False
    unit = cfg.get("timestamp", {}).get("unit")
    return unit not in ("s", "ms", "us", "ns") or row[c["timestamp"]].lstrip("-").replace(".", "", 1).isdigit()


def matching_presets(fields: list[str], header: bool = True) -> list[str]:
    """The presets whose layout ``fields`` (the first line of a file, split) matches.

    A header-less preset (taobao) matches a first line of the same field count whose values have
    its shape (ids present, a known action value, a numeric time); a preset read by header names
    matches when every column its mapping reads is among ``fields``. ``header`` False means the
    fields are names the user gave (``data.column_names``): only header presets are compared.
    """
    names = [f.strip() for f in fields]
    out = []
    for preset in PRESETS.values():
        cfg = preset.config
        if cfg.get("has_header", True) is False:
            if header and cfg.get("column_names") and _fits_row(preset, names):
                out.append(preset.name)
        elif _mapped(cfg) and set(_mapped(cfg)) <= set(names):
            out.append(preset.name)
    return out


def suggest_preset(fields: list[str], header: bool = True) -> str | None:
    """A ready-to-use hint naming the preset(s) ``fields`` match (see `matching_presets`), or None.

    >>> suggest_preset("1,2268318,2520377,pv,1511544070".split(","))
    "the columns match the preset 'taobao' (Alibaba Tianchi UserBehavior): set data.preset: taobao (--preset taobao)"
    >>> suggest_preset(["uid", "sku", "ts"]) is None
    True
    """
    found = matching_presets(fields, header)
    if not found:
        return None
    if len(found) > 1:
        return f"the columns match the presets {', '.join(map(repr, found))}: set data.preset (--preset NAME)"
    name = found[0]
    what = re.split(r"[:(]", PRESETS[name].description)[0].strip()  # its name, not the whole description
    return f"the columns match the preset {name!r} ({what}): set data.preset: {name} (--preset {name})"


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise DataError(f"unknown data preset {name!r}", where="data.preset", fix=did_you_mean(name, PRESETS, always_list=True))
    return PRESETS[name]


def explicit_fields(model: BaseModel) -> dict[str, Any]:
    """The fields set explicitly on ``model`` (recursively), as plain values."""
    out: dict[str, Any] = {}
    for name in model.model_fields_set:
        value = getattr(model, name)
        out[name] = explicit_fields(value) if isinstance(value, BaseModel) else copy.deepcopy(value)
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(dict(base[key]), value)
        else:
            base[key] = value
    return base


def _coerce(value: Any, default: Any, name: str, preset: str) -> Any:
    # options from the CLI (`--option k=v`) arrive as strings: give them the default's type
    if not isinstance(value, str) or default is None or isinstance(default, str):
        return None if isinstance(value, str) and value.lower() in ("none", "null") else value
    if isinstance(default, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
    else:
        try:
            return type(default)(value)
        except ValueError:
            pass
    raise DataError(f"data.options.{name} = {value!r} is not a {type(default).__name__}",
                    where=f"preset {preset!r}", fix=f"give a {type(default).__name__}, like the default {default!r}")


def resolve_data_config(cfg: DataConfig) -> DataConfig:
    """``cfg`` with its preset's defaults filled in under the fields the recipe set explicitly."""
    # the preset's name and option names were checked when cfg was validated (evtlm.recipe.checks)
    if cfg.preset is None:
        return cfg
    preset = get_preset(cfg.preset)
    merged = _merge(copy.deepcopy(preset.config), explicit_fields(cfg))
    options = {k: d for k, (d, _) in preset.options.items()}
    for key, value in cfg.options.items():
        options[key] = _coerce(value, preset.options[key][0], key, preset.name)
    merged["options"] = options
    return DataConfig.model_validate(merged)


def _partition_folder(path: str, base_dir: str | Path | None) -> bool:
    p = Path(path).expanduser()
    p = p if p.is_absolute() or base_dir is None else Path(base_dir) / p
    return p.is_dir() and (p / "manifest.json").is_file() and (p / "report.json").is_file()


def load_event_log(cfg: DataConfig, base_dir: str | Path | None = None) -> EventLog:
    """Canonical events from whatever ``cfg`` names: a preset, a mapped file, or the synthetic shop.

    ``cfg.path`` None without a preset is the embedded synthetic shop (`evtlm.ingest.simulate`); a
    folder written by `evtlm partition` is read back as it was cut (its events are canonical and
    its report is the original read's: the mapping and preset were applied when it was cut).
    """
    if cfg.path is None and cfg.preset is None:
        from evtlm.ingest.simulate import simulate_shop  # lazy: the simulator is only needed here

        log = simulate_shop(cfg.synthetic)
        if log.catalog is not None and not log.report.catalog_items:
            log.report.catalog_items = len(log.catalog)
        return log
    if cfg.path is not None and _partition_folder(cfg.path, base_dir):
        from evtlm.ingest.partition_folder import read_partition  # a folder `evtlm partition` wrote: canonical already

        root = Path(cfg.path) if base_dir is None or Path(cfg.path).is_absolute() else Path(base_dir) / cfg.path
        return read_partition(root).event_log()
    resolved = resolve_data_config(cfg)
    if resolved.path is None:
        raise DataError(f"preset {resolved.preset!r} needs the log's file", where="data.path",
                        fix=f"set data.path to the {resolved.preset} file")
    base = Path(base_dir) if base_dir is not None else None
    preset = PRESETS.get(resolved.preset) if resolved.preset else None
    if preset is not None and preset.reader is not None:
        return preset.reader(resolved, base)
    return read_events(resolved, base)
