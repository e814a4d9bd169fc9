"""The prepared-dataset cache: one directory per fingerprint under ``<cache>/datasets/``.

The key covers everything the examples depend on: the data file's identity (resolved path,
size and modification time; the synthetic shop's settings when there is no file; a content hash
for an in-memory log), the ``data``, ``verbalize``, ``task`` and ``split`` sections, the
tokenizer's content hash (or the scratch settings), and a format version. A directory is
written under a temporary name and renamed when complete, so a crash never leaves a half cache
that a later run would trust.

>>> from evtlm.recipe import Recipe
>>> a = cache_key(Recipe(), {"synthetic": True}, "tok")
>>> b = cache_key(Recipe.model_validate({"task": {"horizon_days": 3}}), {"synthetic": True}, "tok")
>>> len(a), a == b, a == cache_key(Recipe(), {"synthetic": True}, "tok")
(20, False, True)
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from evtlm.events import DataReport, EventLog
from evtlm.recipe import DataConfig, Recipe

CACHE_VERSION = 5  # bump when the example format or the builders change (5: purchase streams, tgt_feat)


def data_fingerprint(cfg: DataConfig, log: EventLog | None = None, base_dir: str | Path | None = None) -> dict[str, Any]:
    """What identifies the input events, without reading them (a stat per file)."""
    if log is not None:  # an in-memory log: hash its content (vectorised, seconds for millions of rows)
        h = hashlib.sha256(pd.util.hash_pandas_object(log.events, index=False).to_numpy().tobytes())
        if log.catalog is not None:
            h.update(pd.util.hash_pandas_object(log.catalog, index=False).to_numpy().tobytes())
        return {"events": h.hexdigest()}
    if cfg.path is None and cfg.preset is None:
        return {"synthetic": cfg.synthetic.model_dump(mode="json")}
    from evtlm.presets import resolve_data_config

    resolved = resolve_data_config(cfg)
    files = [resolved.path] + ([resolved.catalog.path] if resolved.catalog else [])
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return {"config": resolved.model_dump(mode="json"), "files": [_stat(base / f) for f in files if f]}


def _stat(path: Path) -> list[Any]:
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


def new_entry(root: Path) -> Path:
    """A fresh temporary directory beside the final one (same filesystem: rename is atomic)."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))


def commit_entry(tmp: Path, final: Path) -> Path:
    """Move a completed entry into place; a concurrent writer's identical entry wins."""
    (tmp / "done").write_text("ok\n")
    try:
        tmp.rename(final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def is_complete(path: Path) -> bool:
    return (path / "done").is_file()


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
