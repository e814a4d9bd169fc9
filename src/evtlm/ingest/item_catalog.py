"""The item catalog: `read_catalog` reads a table ``item_id -> title, category, brand, price, …``
through ``data.catalog``, and `finalize_catalog` gives it one row per item. It owns the catalog
only; the events it describes are read by `evtlm.ingest.events`, which this module must not import.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evtlm.ingest.canonical import NUMERIC_EXTRAS, STRING_DTYPE
from evtlm.ingest.chunks import read_table
from evtlm.ingest.column_checks import check_columns
from evtlm.ingest.data_report import DataReport
from evtlm.ingest.readers import ROW, BadRows, detect_format, resolve_path, table_columns
from evtlm.ingest.values import clean_ids, to_number
from evtlm.recipe import CatalogConfig


def read_catalog(cfg: CatalogConfig, base_dir: str | Path | None, on_bad_rows: str = "error",
                 report: DataReport | None = None) -> pd.DataFrame:
    """An item catalog: ``item_id`` + the canonical fields of ``cfg.fields`` (all columns if empty)."""
    path = resolve_path(cfg.path, base_dir, "data.catalog.path")
    report = report if report is not None else DataReport(source=str(path))
    fmt = detect_format(path) if cfg.format == "auto" else cfg.format
    names, delim = table_columns(path, fmt, cfg.delimiter, True, None)
    fields = dict(cfg.fields) or {n: n for n in names if n != cfg.item}
    roles = {"data.catalog.item": cfg.item} | {f"data.catalog.fields.{k}": v for k, v in fields.items()}
    check_columns(roles, names, str(path))
    table = read_table(path, fmt=fmt, delimiter=delim, has_header=True, names=names,
                       wanted=list(dict.fromkeys(roles.values())), on_bad_rows=on_bad_rows, report=report)
    df = table.df
    out = pd.DataFrame({ROW: df[ROW], "item_id": clean_ids(df[cfg.item])})
    out = BadRows(table, on_bad_rows, report).drop(out, out["item_id"].isna(), reason="empty catalog item id",
                                                   column=cfg.item, values=df[cfg.item], expected="a non-empty id",
                                                   fix="fill in the ids or check data.catalog.item")
    for name, col in fields.items():
        raw = df[col].loc[out.index]
        out[name] = to_number(raw) if name in NUMERIC_EXTRAS else clean_ids(raw)
    return finalize_catalog(out.drop(columns=[ROW]), report)


def finalize_catalog(catalog: pd.DataFrame, report: DataReport | None = None) -> pd.DataFrame:
    """One row per item (the first one read wins), ``item_id`` as a string column."""
    catalog = catalog.assign(item_id=catalog["item_id"].astype(STRING_DTYPE))
    dup = catalog["item_id"].duplicated()
    if dup.any() and report is not None:
        report.notes.append(f"catalog: {int(dup.sum()):,} repeated item ids, the first row of each kept")
    return catalog.loc[~dup].reset_index(drop=True)
