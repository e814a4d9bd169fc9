"""Raw tables in: files, formats, malformed lines, and the bad-row bookkeeping of `evtlm.ingest.events`.

This module knows nothing about users or actions. It finds a file, works out its format
(CSV/TSV/Parquet/JSONL, plain or ``.gz``), reads the wanted columns as strings with pyarrow
(multi-threaded, bounded memory: only the requested columns are materialised), and reports
lines whose field count is wrong. Every row it returns carries ``_row``, its **1-based data row
number** in the source file (header not counted), so that a later check can name the rows it
rejects even after earlier rows were dropped.

>>> detect_format("logs/events.tsv.gz")
'tsv'
>>> sniff_delimiter("session_id;user_id;item_id")
';'
>>> data_rows_after_skips(n=4, skipped=[2, 5])   # rows 2 and 5 of 6 were malformed
array([1, 3, 4, 6])
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from evtlm.errors import DataError, format_rows
from evtlm.ingest.sources import Source, not_found

ROW = "_row"  # the column holding 1-based source data row numbers
MALFORMED = "malformed line (wrong number of fields)"  # the report's reason for lines pyarrow skipped
Format = Literal["csv", "tsv", "parquet", "jsonl"]
_DELIMITERS = (",", "\t", ";", "|")


def resolve_path(path: str | Path, base_dir: str | Path | None, what: str = "data.path") -> Path:
    """``path`` relative to ``base_dir`` when given, else to the current directory (as a recipe's
    relative data paths are, `evtlm.recipe.load_recipe`); a clear error when it does not exist."""
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    if p.is_file():
        return p
    raise not_found(p, base_dir, what)


def detect_format(path: str | Path) -> Format:
    """The table format from the file name (``.gz`` is looked through); CSV when unsure."""
    name = str(path).lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    return "csv"  # .csv, .txt and anything else: the delimiter is sniffed from the first line


def sniff_delimiter(first_line: str) -> str:
    """The candidate (, tab ; |) occurring most often in the first line; ',' when none does."""
    counts = {d: first_line.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def data_rows_after_skips(n: int, skipped: Sequence[int], start: int = 0) -> np.ndarray:
    """Source row numbers (1-based) of the ``n`` kept rows from kept index ``start`` on, when rows
    ``skipped`` were left out (``start``: rows kept before these, for a file read in chunks).

    The j-th skipped row b_j (sorted, 0-based j) has b_j - 1 - j kept rows before it, so kept row
    i (0-based) lies after every b_j with b_j - 1 - j <= i: its number is i + 1 + that count.
    Skips after the last kept row change nothing, so a chunk may be numbered as soon as every
    skip before it is known.
    """
    kept = np.arange(start, start + n, dtype=np.int64)
    b = np.sort(np.asarray(skipped, dtype=np.int64))
    before = b - 1 - np.arange(b.size)
    return kept + 1 + np.searchsorted(before, kept, side="right")


@dataclass
class RawTable:
    """Raw columns (as read) plus ``_row``; ``source``, ``header`` and ``parts`` word error messages.

    ``parts`` are the files the rows came from (`evtlm.ingest.sources`): ``_row`` numbers rows across
    them, and `where` turns those numbers back into a file and its own row numbers.
    """

    df: pd.DataFrame
    source: str
    header: bool = True
    fmt: str = "csv"
    parts: list[Source] | None = None

    @property
    def numbering(self) -> str:
        if self.fmt == "parquet":
            return "1-based rows of the Parquet table"
        if self.header and self.fmt != "jsonl":
            return "1-based data rows, header line not counted"
        return "1-based data rows = file lines"

    def where(self, rows: np.ndarray, n: int, column: str | None = None) -> str:
        """``file, column 'c', rows 4, 9 (2 rows) (numbering)`` for bad ``rows`` (whole-log numbers)."""
        col = f"column {column!r}, " if column else ""
        parts = self.parts or [Source(Path(self.source))]
        starts = np.array([p.first_row for p in parts], dtype=np.int64)
        which = np.searchsorted(starts, rows, side="right") - 1
        first = int(which[0]) if len(which) else 0
        here = rows[which == first]
        local = here - starts[first] + 1
        others = n - len(here) if len(parts) > 1 else 0
        more = ""
        if others > 0:
            files = len(np.unique(which)) - 1
            more = f"; {others:,} more in {files if files else 'other'} other file{'' if files == 1 else 's'}"
        shown_n = len(here) if len(parts) > 1 else n
        return f"{parts[first].path}, {col}{format_rows(local, shown_n)} ({self.numbering}){more}"


class BadRows:
    """Rows failing a check: a `DataError` (``on_bad_rows: error``) or dropped and counted.

    ``drop(..., bad=False)`` is for intentional filters (``data.start``, ``drop_actions``): those
    rows are always dropped and counted in the report, never an error.
    """

    def __init__(self, table: RawTable, on_bad_rows: str, report) -> None:
        self.table = table
        self.on_bad_rows = on_bad_rows
        self.report = report

    def drop(self, df: pd.DataFrame, mask, *, reason: str, column: str | None = None,
             values: pd.Series | None = None, expected: str = "", fix: str = "",
             bad: bool = True) -> pd.DataFrame:
        mask = np.asarray(mask, dtype=bool)
        n = int(mask.sum())
        if n == 0:
            return df
        rows = df[ROW].to_numpy()[mask]
        if bad and self.on_bad_rows == "error":
            shown = values if values is not None else (df[column] if column in df else None)
            if isinstance(shown, pd.Series):
                # ``mask`` is positional over ``df``; ``values`` may be a raw column holding rows
                # that earlier checks dropped: align it by label first, or the sample shows
                # another row's value
                shown = shown.reindex(df.index)
            sample = ""
            if shown is not None:
                uniq = pd.unique(pd.Series(np.asarray(shown, dtype=object)[mask]))[:5]
                sample = ": " + ", ".join(repr("" if pd.isna(v) else v) for v in uniq)
            raise DataError(
                f"{n:,} {'row' if n == 1 else 'rows'} with {reason}{sample}"
                + (f" (expected {expected})" if expected else ""),
                where=self.table.where(rows, n, column),
                fix=(fix + ", or " if fix else "") + "set data.on_bad_rows: skip to drop and count them",
            )
        self.report.add_dropped(reason, rows)
        return df.loc[~mask]


# ------------------------------------------------------------------------------------ reading
def _open_text(path: Path, encoding: str) -> io.TextIOBase:
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=enc, errors="replace")
    return open(path, encoding=enc, errors="replace")


def _first_line(path: Path, encoding: str = "utf-8") -> str:
    with _open_text(path, encoding) as fh:
        try:
            return fh.readline().rstrip("\r\n")
        except (OSError, EOFError) as err:
            raise DataError(f"cannot read {str(path)!r}: {err}", fix="check the file is not truncated") from err


def table_columns(path: Path, fmt: Format, delimiter: str | None, has_header: bool,
                  column_names: list[str] | None, encoding: str = "utf-8") -> tuple[list[str], str | None]:
    """The column names a read will see, and the delimiter (CSV/TSV); empty files are errors."""
    if path.stat().st_size == 0:
        raise DataError(f"empty file: {str(path)!r} has no bytes", fix="point data.path at the event log")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names), None
    if fmt == "jsonl":
        return [], None  # known only after reading (the keys of the records)
    try:
        line = _first_line(path, encoding)
    except LookupError as err:
        raise DataError(f"unknown text encoding {encoding!r}", where="data.encoding",
                        fix="use a Python codec name such as utf-8 or latin-1") from err
    if not line.strip():
        raise DataError(f"empty file: the first line of {str(path)!r} is blank", fix="point data.path at the event log")
    delim = delimiter or ("\t" if fmt == "tsv" else sniff_delimiter(line))
    fields = [f.strip() for f in next(csv.reader([line], delimiter=delim))]
    if column_names:
        if len(column_names) != len(fields):
            raise DataError(
                f"data.column_names has {len(column_names)} names but the first line has "
                f"{len(fields)} fields ({line[:120]!r})",
                where=str(path),
                fix=f"give one name per field, or check data.delimiter (using {delim!r})",
            )
        return list(column_names), delim
    if not has_header:
        raise DataError(
            f"data.has_header is false but data.column_names is not set ({len(fields)} fields per line)",
            where=str(path),
            fix="name the columns, e.g. data.column_names: [user_id, item_id, action, timestamp] "
            "(validate-data: --column-names user_id,item_id,action,timestamp)",
        )
    return fields, delim
