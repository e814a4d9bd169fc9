"""One error family for everything a user can get wrong.

Every error a user can cause is an :class:`EvtlmError` carrying three parts, in the spirit of
PEFT's messages: *what* went wrong, *where* (file, row, column, dotted recipe path) and *what to
do*. The CLI prints ``error: <what>, <where>, <what to do>`` and exits 2, without a traceback.

>>> err = DataError("unparseable timestamp '2017-13-45'", where="events.csv, column 'ts', rows 3, 9 (2 rows)",
...                 fix="use ISO-8601 strings or set data.timestamp.unit")
>>> print(err)
unparseable timestamp '2017-13-45', events.csv, column 'ts', rows 3, 9 (2 rows), use ISO-8601 strings or set data.timestamp.unit

>>> closest("user_idd", ["user_id", "item_id", "timestamp"])
['user_id']
>>> format_rows([4, 9, 11, 15, 20, 31, 40], total=7)
'rows 4, 9, 11, 15, 20 … (7 rows)'
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = [
    "EvtlmError",
    "DataError",
    "RecipeError",
    "ModelUnavailableError",
    "TaskError",
    "RunDirError",
    "StorageError",
    "closest",
    "did_you_mean",
    "format_rows",
]


class EvtlmError(Exception):
    """Base of every user-facing error: ``what``, ``where`` and ``fix`` (what to do).

    Subclasses only name the stage; the message format is the same everywhere, so the CLI can
    print any of them on one line.
    """

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        return ", ".join(part for part in (self.what, self.where, self.fix) if part)

    def __reduce__(self):  # keep picklable across datasets' worker processes
        return (_rebuild, (type(self), self.what, self.where, self.fix))


def _rebuild(cls: type[EvtlmError], what: str, where: str | None, fix: str | None) -> EvtlmError:
    return cls(what, where=where, fix=fix)


class DataError(EvtlmError):
    """Bad or missing input data: files, columns, values, rows."""


class RecipeError(EvtlmError):
    """A recipe that does not validate (unknown keys, wrong types, bad overrides, settings that
    cannot work together). ``problems`` holds one line per problem (`evtlm validate` prints them
    one per line; the message joins them)."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None,
                 problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        super().__init__(what, where=where, fix=fix)


class ModelUnavailableError(EvtlmError):
    """A base model or tokenizer that cannot be loaded (offline, wrong path)."""


class TaskError(EvtlmError):
    """A task that cannot build its examples (unknown name, target too long, empty label space)."""


class RunDirError(EvtlmError):
    """A run directory that is missing files `predict` / `evaluate` need."""


class StorageError(EvtlmError):
    """A file or directory that cannot be read or written: permissions, a full disk, a path
    that is not there (`evtlm.fsio.writing` names the path when the OS error does not)."""


def closest(name: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """The candidates closest to ``name`` (case-insensitive), best first."""
    pool = list(candidates)
    lowered = {c.lower(): c for c in pool}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=cutoff)
    if not hits:
        # `lr_rate` -> `lr`, `user-col` -> `user`: a shared leading word is a strong hint that
        # difflib's ratio misses when one name is much longer than the other.
        head = name.lower().replace("-", "_").split("_")[0]
        hits = [c for c in lowered if head and c.replace("-", "_").split("_")[0] == head][:n]
    return [lowered[h] for h in hits]


def did_you_mean(name: str, candidates: Iterable[str], *, always_list: bool = False) -> str:
    """A ready-to-append hint: "did you mean 'x'?" when one is close, else "valid: 'a', 'b'".

    ``always_list`` adds the valid names after a close match too (for short registries, where
    seeing every choice helps more than it clutters).

    >>> did_you_mean("taobo", ["taobao", "online_retail"])
    "did you mean 'taobao'?"
    >>> did_you_mean("taobo", ["taobao", "online_retail"], always_list=True)
    "did you mean 'taobao'? valid: 'online_retail', 'taobao'"
    >>> did_you_mean("amazon", ["taobao", "online_retail"])
    "valid: 'online_retail', 'taobao'"
    """
    pool = sorted(set(candidates))
    near = closest(name, pool)
    valid = "valid: " + ", ".join(repr(c) for c in pool[:30]) + (" …" if len(pool) > 30 else "")
    if near:
        return f"did you mean {near[0]!r}?" + (f" {valid}" if always_list else "")
    return valid


def format_rows(rows: Sequence[int], total: int | None = None, show: int = 5) -> str:
    """'rows 4, 9, 11 (3 rows)': the first ``show`` row numbers and the total count."""
    total = len(rows) if total is None else total
    head = ", ".join(str(int(r)) for r in list(rows)[:show])
    more = " …" if total > show else ""
    noun = "row" if total == 1 else "rows"
    return f"{noun} {head}{more} ({total} {noun})"
