"""Writing files so that a crash, a full disk or a read-only directory never leaves half a file
that a later run trusts.

Three rules, used by every writer whose output evtlm reads back (the data cache, the run
directory, checkpoints, the files `evaluate` leaves for `predict`):

- a file is written under a temporary name beside its final one, flushed to disk (``fsync``)
  and renamed into place (`atomic_write_text`, `atomic_path`): a reader sees the old file or
  the whole new one, never a prefix;
- a directory of many files counts only once its completion marker exists (the data cache's
  ``done``, a checkpoint's ``trainer_state.json``, a run directory's ``run.json``), written last;
- an ``OSError`` while writing becomes a :class:`~evtlm.errors.StorageError` naming the path
  and what to do (`writing`), so the CLI prints one line and exits 2 instead of a traceback.

>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> atomic_write_text(d / "a.json", '{"ok": true}\\n')
>>> (d / "a.json").read_text(), sorted(p.name for p in d.iterdir())
('{"ok": true}\\n', ['a.json'])
>>> print(os_error_message(OSError(28, "No space left on device"), d / "x"))  # doctest: +ELLIPSIS
no space left on the device: .../x, free some space or write elsewhere (output.dir, --out, $EVTLM_CACHE)
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from evtlm.errors import StorageError

__all__ = ["default_cache_dir", "atomic_write_text", "atomic_path", "fsync_file", "fsync_dir", "fsync_tree", "writing", "os_error_message",
           "library_bars_off", "remove_tree"]


def default_cache_dir() -> Path:
    """Where evtlm caches what it builds (datasets, shards, tokenizers, bases): ``$EVTLM_CACHE``,
    else ``~/.cache/evtlm``."""
    return Path(os.environ.get("EVTLM_CACHE") or Path.home() / ".cache" / "evtlm").expanduser()


TMP_PREFIX = ".tmp-"  # temporary siblings: never read as results, swept when their writer is gone


def fsync_file(path: Path) -> None:
    """Flush one file's data to the device (a rename after this cannot expose an empty file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (makes a rename inside it durable); a no-op where the OS
    cannot open directories (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories: the rename is still atomic
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """``fsync`` every file and directory under ``root`` (before its completion marker is written)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fsync_file(Path(dirpath) / name)
        fsync_dir(Path(dirpath))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` (after ``fsync``) when
    the block ends without an error, deleted when it raises."""
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """``Path.write_text``, but a reader never sees a partial file (see the module doc)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)


@contextlib.contextmanager
def library_bars_off() -> Iterator[None]:
    """transformers' progress bars off while a model is saved or loaded: "Writing model shards"
    for one shard and "Loading weights" for a few MB are noise a user cannot act on (and would
    surround a one-line error)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def remove_tree(path: Path) -> None:
    """Delete a (partial) directory, ignoring what is already gone."""
    shutil.rmtree(path, ignore_errors=True)


_FIXES = {
    errno.ENOSPC: ("no space left on the device: {path}", "free some space or write elsewhere (output.dir, --out, $EVTLM_CACHE)"),
    errno.EDQUOT: ("disk quota exceeded: {path}", "free some space or write elsewhere (output.dir, --out, $EVTLM_CACHE)"),
    errno.EACCES: ("permission denied: {path}", "make it writable (or readable) for this user, or choose another path"),
    errno.EPERM: ("operation not permitted: {path}", "make it writable for this user, or choose another path"),
    errno.EROFS: ("read-only file system: {path}", "write elsewhere (output.dir, --out, $EVTLM_CACHE)"),
    errno.ENOENT: ("no such file or directory: {path}", "check the path"),
    errno.ENOTDIR: ("not a directory: {path} (a file sits where a directory is needed)", "remove that file or choose another path"),
    errno.EISDIR: ("is a directory: {path}", "give a file, not a directory"),
    errno.EEXIST: ("already exists: {path}", "remove it or choose another path"),
}


def os_error_message(err: OSError, path: str | Path | None = None, what: str | None = None) -> str:
    """One line for an ``OSError``: what failed and where (the error's own file name, else
    ``path``), ``what`` was being written, what to do.

    >>> os_error_message(FileNotFoundError(2, "No such file or directory", "runs/x/run.json"))
    'no such file or directory: runs/x/run.json, check the path'
    >>> os_error_message(OSError(28, "No space left on device"), "runs/x", "writing the run directory")
    'no space left on the device: runs/x, writing the run directory, free some space or write elsewhere (output.dir, --out, $EVTLM_CACHE)'
    """
    shown = err.filename if err.filename is not None else path
    shown = str(shown) if shown is not None else "(path not reported)"
    head, fix = _FIXES.get(err.errno, (f"{err.strerror or str(err) or type(err).__name__}: {{path}}", "check the path and the device"))
    return ", ".join(part for part in (head.format(path=shown), what, fix) if part)


@contextlib.contextmanager
def writing(path: str | Path, what: str | None = None) -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into a one-line :class:`StorageError` naming
    ``path`` (when the error itself names no file: a full disk during ``write()`` does not)."""
    try:
        yield
    except StorageError:
        raise
    except OSError as err:
        if isinstance(err, BrokenPipeError):  # the reader of stdout went away: the CLI handles it
            raise
        raise StorageError(os_error_message(err, path, what)) from err
