"""Reading the parts of a log (`evtlm.ingest.sources`), whole or in chunks, into `RawTable` s.

One function per format turns a file into DataFrames of the wanted columns (strings for
delimited text) with ``_row``, the 1-based data row number in that file; `iter_chunks` runs them
over every part, renumbering rows across the parts and filling ``key=value`` folder columns.
Read whole, a part goes through pyarrow's multi-threaded reader; read in chunks (memory: one
chunk), CSV is streamed block by block in file order, Parquet by record batch and JSON Lines
by blocks of lines. Both ways give the same rows, numbers and malformed-line counts, so a log
larger than memory is validated exactly as a small one.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from evtlm.errors import DataError
from evtlm.ingest.readers import MALFORMED, ROW, Format, RawTable, data_rows_after_skips, table_columns
from evtlm.ingest.sources import Source


def part_columns(part: Source, fmt: Format, delimiter: str | None, has_header: bool,
                 column_names: list[str] | None, encoding: str = "utf-8") -> tuple[list[str], str | None]:
    """`table_columns` of one part of the log, plus the ``key=value`` folder columns it lacks."""
    names, delim = table_columns(part.path, fmt, delimiter, has_header, column_names, encoding)
    return names + [k for k in part.partition if k not in names], delim


def read_table(path: Path | list[Source], *, fmt: Format, delimiter: str | None, has_header: bool,
               names: list[str], wanted: list[str], on_bad_rows: str, report,
               encoding: str = "utf-8", source: str | None = None) -> RawTable:
    """Read ``wanted`` columns of ``path`` (a file, or the parts of a log) into one `RawTable`.

    CSV/TSV columns come back as strings (ids like ``007`` keep their zeros; values are parsed
    later, with row numbers for whatever fails). Malformed lines are collected by a pyarrow
    ``invalid_row_handler`` and reported by file line (an error), or dropped and counted.
    ``names`` are the first part's columns; every other part's are read from its own header.
    """
    parts = [Source(Path(path))] if isinstance(path, (str, Path)) else path
    frames = [chunk.df for chunk in iter_chunks(parts, fmt=fmt, delimiter=delimiter, has_header=has_header,
                                                  names=names, wanted=wanted, on_bad_rows=on_bad_rows,
                                                  report=report, encoding=encoding, chunk_rows=None)]
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    label = source or (str(parts[0].path) if len(parts) == 1 else f"{len(parts)} files")
    if len(df) == 0:
        raise DataError(f"no data rows in {label!r} (only a header?)", fix="point data.path at the event log")
    return RawTable(df, label, header=has_header, fmt=fmt, parts=parts)


def iter_chunks(parts: list[Source], *, fmt: Format, delimiter: str | None, has_header: bool,
                names: list[str] | None, wanted: list[str], on_bad_rows: str, report,
                encoding: str = "utf-8", chunk_rows: int | None = None) -> Iterator[RawTable]:
    """The parts' ``wanted`` columns, a part at a time (``chunk_rows`` None) or in chunks of about
    ``chunk_rows`` rows, each a `RawTable` whose ``_row`` numbers rows across all the parts.

    Sets each part's ``first_row``. Chunked reading streams the file (memory: one chunk), so a
    log larger than memory can be validated and partitioned; a part read whole uses pyarrow's
    multi-threaded reader. Both give the same rows, numbers and malformed-line counts.
    """
    next_row = 1
    for part in parts:
        part.first_row = next_row
        # each part's own header (exports need not keep the column order); a headerless log's
        # names come from the recipe, the same for every part
        file_names, _ = table_columns(part.path, fmt, delimiter, has_header, None if has_header else names, encoding)
        read_cols = [c for c in wanted if c in file_names or fmt == "jsonl"]
        last = 0
        for df, last in _read_part(part.path, fmt, delimiter, has_header, file_names, read_cols,
                                   on_bad_rows, report, encoding, chunk_rows, offset=next_row - 1):
            for key, value in part.partition.items():  # folder columns the file itself lacks
                if key in wanted and key not in df:
                    df[key] = value
            df[ROW] = df[ROW] + (next_row - 1)
            yield RawTable(df, str(part.path), header=has_header, fmt=fmt, parts=[part])
        part.rows = last
        next_row += last


def _read_part(path: Path, fmt: Format, delimiter: str | None, has_header: bool, names: list[str],
               wanted: list[str], on_bad_rows: str, report, encoding: str, chunk_rows: int | None,
               offset: int = 0) -> Iterator[tuple[pd.DataFrame, int]]:
    """(rows with a 1-based ``_row`` in this file, data rows seen so far) per chunk of one file.

    ``offset`` (rows of earlier parts) shifts the row numbers the report records for malformed lines.
    """
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if chunk_rows is None:
            df = pq.read_table(path, columns=wanted).to_pandas()
            df[ROW] = np.arange(1, len(df) + 1, dtype=np.int64)
            yield df, len(df)
            return
        seen = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=wanted):
            df = batch.to_pandas()
            df[ROW] = np.arange(seen + 1, seen + len(df) + 1, dtype=np.int64)
            seen += len(df)
            yield df, seen
        return
    if fmt == "jsonl":
        seen = 0
        for df in _read_jsonl(path, chunk_rows):
            df = df.reset_index(drop=True)
            df[ROW] = np.arange(seen + 1, seen + len(df) + 1, dtype=np.int64)
            seen += len(df)
            yield df, seen
        return
    yield from _read_csv(path, delimiter or ",", has_header, names, wanted, on_bad_rows, report, encoding,
                         chunk_rows, offset)


def _read_jsonl(path: Path, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    """JSON Lines, whole or in blocks of ``chunk_rows`` lines (pyarrow parses each block)."""
    import pyarrow.json as pj

    def parse(source) -> pd.DataFrame:
        try:
            return pj.read_json(source).to_pandas()
        except pa.ArrowInvalid as err:
            raise DataError(f"malformed JSON lines in {str(path)!r}: {err}",
                            fix="one JSON object per line is expected (JSON Lines)") from err

    if chunk_rows is None:
        yield parse(path)
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        while True:
            lines = [line for line in (fh.readline() for _ in range(chunk_rows)) if line]
            if not lines:
                return
            yield parse(io.BytesIO(b"".join(ln if ln.endswith(b"\n") else ln + b"\n" for ln in lines)))


def _read_csv(path: Path, delimiter: str, has_header: bool, names: list[str], wanted: list[str],
              on_bad_rows: str, report, encoding: str = "utf-8", chunk_rows: int | None = None,
              offset: int = 0) -> Iterator[tuple[pd.DataFrame, int]]:
    from pyarrow import csv as pacsv

    bad: list[tuple[int | None, int, int, str]] = []

    def on_invalid(row) -> str:  # called by pyarrow for malformed lines only (rare): keep going
        bad.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"

    def options(threads: bool) -> dict:
        read = pacsv.ReadOptions(column_names=names, skip_rows=int(has_header), use_threads=threads,
                                 encoding=encoding)
        if chunk_rows is not None:  # ~60 bytes a line: blocks of about chunk_rows lines
            read.block_size = int(min(max(chunk_rows * 64, 1 << 12), 1 << 30))
        return dict(read_options=read,
                    parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
                    convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in wanted},
                                                         include_columns=wanted, strings_can_be_null=False))

    def fail(err: pa.ArrowInvalid) -> DataError:
        return DataError(f"cannot parse {str(path)!r} as delimited text: {err}",
                         fix=f"check data.format, data.delimiter (using {delimiter!r}) and data.encoding "
                         f"({encoding!r}; e.g. latin-1 for old spreadsheet exports)")

    reported = 0

    def skipped_rows(final: bool) -> np.ndarray:
        """Data rows of the malformed lines seen so far; counted in the report (or an error)."""
        nonlocal reported
        lines = np.array([b[0] for b in bad], dtype=np.int64)
        skipped = lines - int(has_header)  # file line -> data row
        if len(bad) > reported:
            reason = MALFORMED
            if on_bad_rows == "error":
                _, expected, actual, text = bad[0]
                total = f"{len(bad):,} lines" if final else f"{len(bad):,} lines so far"
                raise DataError(
                    f"{len(bad):,} malformed {'line' if len(bad) == 1 else 'lines'}: expected {expected} "
                    f"fields separated by {delimiter!r}, line {lines[0]} has {actual} ({text[:120]!r})",
                    where=f"{path}, file lines {', '.join(map(str, lines[:5]))}{' …' if len(bad) > 5 else ''} "
                    f"({total}; data rows {', '.join(map(str, skipped[:5]))})",
                    fix="quote fields that contain the delimiter, check data.delimiter, "
                    "or set data.on_bad_rows: skip to drop and count them",
                )
            report.add_dropped(reason, skipped[reported:] + offset)
            reported = len(bad)
        return skipped

    if chunk_rows is None:
        try:
            table = pacsv.read_csv(path, **options(threads=True))
            if bad and any(b[0] is None for b in bad):
                bad.clear()  # line numbers are only known to a serial read: redo it (bad files only)
                table = pacsv.read_csv(path, **options(threads=False))
        except pa.ArrowInvalid as err:
            raise fail(err) from err
        skipped = skipped_rows(final=True)
        df = table.to_pandas()
        df[ROW] = data_rows_after_skips(len(df), skipped)
        yield df, len(df) + len(skipped)
        return
    # streamed: blocks are parsed in file order (one thread), so every malformed line before a
    # batch is known when the batch arrives, and its rows can be numbered at once
    kept = 0
    try:
        reader = pacsv.open_csv(path, **options(threads=False))
        pending: list[pa.RecordBatch] = []
        for batch in reader:
            pending.append(batch)
            if sum(b.num_rows for b in pending) < chunk_rows:
                continue
            df, pending = pa.Table.from_batches(pending).to_pandas(), []
            df[ROW] = data_rows_after_skips(len(df), skipped_rows(final=False), start=kept)
            kept += len(df)
            yield df, kept + len(bad)
        skipped = skipped_rows(final=True)
        if pending or kept == 0:
            df = (pa.Table.from_batches(pending) if pending else reader.schema.empty_table()).to_pandas()
            df[ROW] = data_rows_after_skips(len(df), skipped, start=kept)
            kept += len(df)
            yield df, kept + len(bad)
    except pa.ArrowInvalid as err:
        raise fail(err) from err
