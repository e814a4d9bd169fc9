"""Where an event log's rows live: one file, a glob, or a folder of files (a partitioned export).

``data.path`` may name

* a file (``logs/events.csv.gz``),
* a glob (``logs/2017-*.parquet``, ``exports/**/*.csv``), or
* a folder, as Spark, Hive, a warehouse or `evtlm simulate --chunk-rows` write it: every data
  file below it, sorted by path, is one part of the log. Hidden files and ``_``-prefixed markers
  (``_SUCCESS``, ``_metadata``) and checksum files are left out.

All parts must share one format (CSV/TSV/Parquet/JSONL, plain or ``.gz``). Folder names of the
form ``key=value`` (Hive partitioning: ``dt=2017-11-25/part-0.parquet``) are columns too, with
the folder's value on every row of the files below it, so a mapping may name them
(``data.columns.timestamp: dt``).

Rows are numbered across the parts in this order: part 2's first data row follows part 1's
last, so a row number names one row of the whole log; `Source.first_row` says where each part
starts, and error messages name the part and its own row numbers.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> for name in ("dt=2017-11-26/part-1.csv", "dt=2017-11-25/part-0.csv", "_SUCCESS"):
...     (d / name).parent.mkdir(parents=True, exist_ok=True)
...     _ = (d / name).write_text("user,item\\n1,a\\n")
>>> [(s.path.relative_to(d).as_posix(), s.partition) for s in find_sources(d, None)]
[('dt=2017-11-25/part-0.csv', {'dt': '2017-11-25'}), ('dt=2017-11-26/part-1.csv', {'dt': '2017-11-26'})]
"""

from __future__ import annotations

import glob as globlib
from dataclasses import dataclass, field
from pathlib import Path

from evtlm.errors import DataError, closest

_GLOB_CHARS = "*?["
_DATA_SUFFIXES = (".csv", ".tsv", ".tab", ".txt", ".parquet", ".pq", ".jsonl", ".ndjson", ".json", ".dat")
_SKIP_SUFFIXES = (".crc", ".tmp", ".inprogress", ".md", ".yaml", ".yml")


@dataclass
class Source:
    """One part of the log: its file, the ``key=value`` folder columns above it, and where its
    rows start in the whole log's numbering (set as the parts are read)."""

    path: Path
    partition: dict[str, str] = field(default_factory=dict)
    first_row: int = 1
    rows: int = 0  # data rows read from it, malformed ones included (set once it is read)


def is_glob(path: str | Path) -> bool:
    return any(ch in str(path) for ch in _GLOB_CHARS)


def _is_data_file(p: Path) -> bool:
    name = p.name.lower()
    if name.startswith((".", "_")) or name.endswith(_SKIP_SUFFIXES):
        return False
    base = name.removesuffix(".gz")
    # Spark's part files carry a codec before the format (part-0.snappy.parquet) or no suffix at all
    return base.endswith(_DATA_SUFFIXES) or base.startswith("part-")


def _partition_values(path: Path, root: Path) -> dict[str, str]:
    try:
        parts = path.relative_to(root).parts[:-1]
    except ValueError:
        parts = path.parts[:-1]
    out = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if sep and key:
            out[key] = value
    return out


def find_sources(path: str | Path, base_dir: str | Path | None, what: str = "data.path") -> list[Source]:
    """The parts of the log at ``path`` (a file, a glob or a folder), in reading order.

    ``path`` is relative to ``base_dir`` when given, else to the current directory. A path that
    matches nothing is an error naming the closest existing name.
    """
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    if is_glob(p):
        root = Path(*[part for part in p.parts[: next(i for i, s in enumerate(p.parts) if is_glob(s))]])
        found = sorted(Path(m) for m in globlib.glob(str(p), recursive=True))
        files = [f for f in found if f.is_file() and _is_data_file(f)]
        if not files:
            raise DataError(f"no data files match {str(p)!r}", where=what,
                            fix=f"check the pattern ({len(found)} paths matched, none a data file); "
                            "'**' matches folders at any depth, e.g. exports/**/*.parquet")
        return [Source(f, _partition_values(f, root)) for f in files]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and _is_data_file(f)
                       and not any(part.startswith((".", "_")) for part in f.relative_to(p).parts[:-1]))
        if not files:
            raise DataError(f"the folder {str(p)!r} holds no data files", where=what,
                            fix="point data.path at a file, a glob, or a folder of .csv/.tsv/.parquet/.jsonl "
                            "files (hidden and _-prefixed files are skipped)")
        return [Source(f, _partition_values(f, p)) for f in files]
    if p.is_file():
        return [Source(p)]
    raise not_found(p, base_dir, what, also="; a folder or a glob such as logs/*.parquet reads several files")


def not_found(p: Path, base_dir: str | Path | None, what: str, also: str = "") -> DataError:
    """The error for a missing file ``p``: the closest existing name, or the missing folder."""
    hint = ""
    if p.parent.is_dir():
        near = closest(p.name, [c.name for c in p.parent.iterdir()])
        hint = f"did you mean {near[0]!r}? " if near else ""
    elif not p.parent.exists():
        hint = f"the folder {str(p.parent)!r} does not exist either; "
    against = repr(str(base_dir)) if base_dir is not None else f"the current directory, {str(Path.cwd())!r}"
    return DataError(f"file not found: {str(p)!r}", where=what,
                     fix=f"{hint}check {what} (relative paths are resolved against {against}{also})")


def describe(sources: list[Source], path: str | Path) -> str:
    """How reports name the log: the file itself, or ``<path> (N files)``."""
    if len(sources) == 1:
        return str(sources[0].path)
    return f"{path} ({len(sources)} files)"
