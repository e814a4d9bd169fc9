"""The prepared-dataset cache: one directory per fingerprint under ``<cache>/datasets/``.

The key covers everything the examples depend on: the data file's identity (resolved path,
size and modification time; the synthetic shop's settings when there is no file; a content hash
for an in-memory log), the ``data``, ``verbalize``, ``task`` and ``split`` sections, the
tokenizer's content hash (or the scratch settings), and a format version.

A crash, a kill or a full disk never leaves a half cache that a later run trusts: an entry is
written under a temporary name (``.tmp-*``, with its writer's pid), every file is flushed to disk,
then its completion marker ``done`` (a manifest: each file's size) is written and the directory
is renamed into place. An entry counts only when its marker is there and every file has the size
it lists (`is_complete`); anything else is rebuilt, and the temporary directories of writers that
died are swept by the next writer (`sweep_stale`).

>>> from evtlm.recipe import Recipe
>>> a = cache_key(Recipe(), {"synthetic": True}, "tok")
>>> b = cache_key(Recipe.model_validate({"task": {"horizon_days": 3}}), {"synthetic": True}, "tok")
>>> len(a), a == b, a == cache_key(Recipe(), {"synthetic": True}, "tok")
(20, False, True)
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from evtlm.ingest.events import DataReport, EventLog
from evtlm.fsio import TMP_PREFIX, fsync_dir, fsync_file, fsync_tree, remove_tree
from evtlm.recipe import DataConfig, Recipe

CACHE_VERSION = 6  # bump when the example format or the builders change (5: purchase streams, tgt_feat; 6: next_action tgt_feat)


def data_fingerprint(cfg: DataConfig, log: EventLog | None = None, base_dir: str | Path | None = None) -> dict[str, Any]:
    """What identifies the input events, without reading them (a stat per file)."""
    if log is not None:  # an in-memory log: hash its content (vectorised, seconds for millions of rows)
        h = hashlib.sha256(pd.util.hash_pandas_object(log.events, index=False).to_numpy().tobytes())
        if log.catalog is not None:
            h.update(pd.util.hash_pandas_object(log.catalog, index=False).to_numpy().tobytes())
        return {"events": h.hexdigest()}
    if cfg.path is None and cfg.preset is None:
        return {"synthetic": cfg.synthetic.model_dump(mode="json")}
    from evtlm.ingest.presets import resolve_data_config

    resolved = resolve_data_config(cfg)
    files = [resolved.path] + ([resolved.catalog.path] if resolved.catalog else [])
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return {"config": resolved.model_dump(mode="json"), "files": [_stat(base / f) for f in files if f]}


def _stat(path: Path) -> list[Any]:
    from evtlm.ingest.sources import is_glob

    if is_glob(path):  # every file the pattern matches (a new or changed part changes the key)
        import glob

        return [str(path)] + [_stat(Path(p)) for p in sorted(glob.glob(str(path), recursive=True)) if Path(p).is_file()]
    path = path.resolve()
    if path.is_dir():
        return [str(path)] + [_stat(p) for p in sorted(path.rglob("*")) if p.is_file()]
    if not path.exists():
        return [str(path), "missing"]  # the reader reports it properly
    st = path.stat()
    return [str(path), st.st_size, st.st_mtime_ns]


def cache_key(recipe: Recipe, data_fp: dict[str, Any], tokenizer_key: str) -> str:
    """The fingerprint of a prepared dataset (20 hex digits)."""
    from evtlm import __version__

    payload = {
        "version": CACHE_VERSION,
        "evtlm": __version__,
        "data_file": data_fp,
        **{name: getattr(recipe, name).model_dump(mode="json") for name in ("data", "verbalize", "task", "split")},
        # model fields the data stage reads: purchase streams carry tgt_feat only with the features
        "model": {"history_features": recipe.model.history_features, "item_tokens": recipe.model.item_tokens},
        "tokenizer": tokenizer_key,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


MARKER = "done"  # the completion marker: {"files": {relative path: size}}, written last
WRITER = "writer"  # inside a temporary entry: "<pid> <host>" of the process writing it


def new_entry(root: Path) -> Path:
    """A fresh temporary directory beside the final one (same filesystem: rename is atomic)."""
    root.mkdir(parents=True, exist_ok=True)
    sweep_stale(root)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=TMP_PREFIX))
    (tmp / WRITER).write_text(f"{os.getpid()} {socket.gethostname()}\n")
    return tmp


def commit_entry(tmp: Path, final: Path) -> Path:
    """Flush a completed entry, mark it complete and move it into place.

    A concurrent writer's complete entry wins (ours is dropped); an incomplete directory at the
    final name (a damaged entry, or one left by an older writer) is replaced.
    """
    (tmp / WRITER).unlink(missing_ok=True)
    fsync_tree(tmp)
    manifest = {"files": {p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}}
    (tmp / MARKER).write_text(json.dumps(manifest, indent=0) + "\n")
    fsync_file(tmp / MARKER)
    if final.exists() and not is_complete(final):
        discard(final)
    try:
        tmp.rename(final)
    except OSError:  # the final name exists: another process committed the same entry first
        remove_tree(tmp)
    fsync_dir(final.parent)
    return final


def is_complete(path: Path) -> bool:
    """True when ``path`` holds a committed entry: its marker, and every file it lists at its size."""
    try:
        manifest = json.loads((path / MARKER).read_text())
        files = manifest["files"]
        return bool(files) and all((path / name).stat().st_size == size for name, size in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing, unreadable or an old "ok" marker
        return False


def discard(path: Path) -> None:
    """Remove an entry that must not be read (incomplete or damaged): renamed aside first, so a
    reader never sees it half-deleted, then deleted."""
    aside = path.with_name(f"{TMP_PREFIX}discard-{path.name}-{os.getpid()}")
    try:
        path.rename(aside)
    except OSError:
        aside = path
    remove_tree(aside)


def sweep_stale(root: Path, max_age_s: float = 86_400.0) -> int:
    """Delete the temporary entries whose writer is gone (killed mid-write); how many.

    A writer on this host is gone when its pid no longer runs; one on another host (a shared
    cache) or one that left no pid counts as gone after ``max_age_s``.
    """
    removed = 0
    for tmp in root.glob(f"{TMP_PREFIX}*"):
        if tmp.is_dir() and not _writer_alive(tmp, max_age_s):
            remove_tree(tmp)
            removed += 1
    return removed


def _writer_alive(tmp: Path, max_age_s: float) -> bool:
    try:
        pid, host = (tmp / WRITER).read_text().split()
    except (OSError, ValueError):
        pid, host = None, None
    if pid is not None and host == socket.gethostname():
        try:
            os.kill(int(pid), 0)  # signal 0: does the process exist?
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError):  # exists under another user / unparseable pid
            return True
        return True
    try:
        return time.time() - tmp.stat().st_mtime < max_age_s
    except OSError:
        return False


def save_log(log: EventLog, path: Path) -> None:
    log.events.to_parquet(path / "events.parquet", index=False)
    if log.catalog is not None:
        log.catalog.to_parquet(path / "catalog.parquet", index=False)
    (path / "events_report.json").write_text(json.dumps(log.report.to_dict()))


def load_log(path: Path) -> EventLog:
    events = pd.read_parquet(path / "events.parquet")
    catalog = pd.read_parquet(path / "catalog.parquet") if (path / "catalog.parquet").is_file() else None
    report = DataReport(**json.loads((path / "events_report.json").read_text()))
    return EventLog(events, catalog, report)
