"""Which data files a run was trained on, and the check `evtlm evaluate` makes before reading them again.

A run directory is self-contained except for the event log: evaluation prepares the splits again
from the log (the cache makes that cheap). So the run records each input file by its absolute
path (the recipe's relative paths were resolved against the current directory when it loaded,
see `evtlm.recipe.load_recipe`), its size and a SHA-256 of its first MiB, in ``run.json``
(``data_files``). Before evaluating, `check_data_files` stops with one clear line when a file is
missing (moved, deleted, another machine) or is not the file the run saw (its size or head
differs: other splits, other labels). Modification times are recorded but not compared: a copy
of the same file (``cp`` without ``-p``, a download) is the same data.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "log.csv"
>>> _ = p.write_text("user_id,item_id\\n1,2\\n")
>>> fp = fingerprint(p)
>>> fp["size"], len(fp["head_sha256"]), differences(fp, fingerprint(p))
(20, 64, [])
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from evtlm.errors import RunDirError
from evtlm.recipe import DataConfig
from evtlm.ingest.sources import find_sources, is_glob

__all__ = ["HEAD_BYTES", "fingerprint", "data_files", "differences", "check_data_files"]

HEAD_BYTES = 1 << 20  # hashed bytes at the start of each file: milliseconds, and a changed log shows there


def fingerprint(path: str | Path) -> dict[str, Any]:
    """``path`` (absolute), its size, a SHA-256 of its first `HEAD_BYTES` and its modification time.

    A folder or a glob (a log in several files, `evtlm.ingest.sources`) is fingerprinted over all its
    files: their total size, a SHA-256 of each one's name and head, the newest time.
    """
    if is_glob(path) or Path(path).is_dir():
        root = Path(path) if is_glob(path) else Path(path).resolve()
        parts = [fingerprint(s.path) for s in find_sources(root, None)]
        h = hashlib.sha256()
        for part in parts:
            h.update(f"{Path(part['path']).name}:{part['head_sha256']}\n".encode())
        return {"path": str(root), "size": sum(p["size"] for p in parts), "head_sha256": h.hexdigest(),
                "mtime": max(p["mtime"] for p in parts), "files": len(parts)}
    path = Path(path).resolve()
    st = path.stat()
    with path.open("rb") as fh:
        head = hashlib.sha256(fh.read(HEAD_BYTES)).hexdigest()
    mtime = dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc).isoformat(timespec="seconds")
    return {"path": str(path), "size": st.st_size, "head_sha256": head, "mtime": mtime}


def _exists(path: str | Path) -> bool:
    """A file, a folder, or a glob matching at least one file."""
    if is_glob(path):
        import glob

        return any(Path(p).is_file() for p in glob.iglob(str(path), recursive=True))
    return Path(path).exists()


def _paths(cfg: DataConfig) -> dict[str, str]:
    """Recipe key -> path of each file the data section names (the synthetic shop names none)."""
    out = {"data.path": cfg.path} if cfg.path else {}
    if cfg.catalog is not None:
        out["data.catalog.path"] = cfg.catalog.path
    return out


def data_files(cfg: DataConfig) -> dict[str, dict[str, Any]]:
    """Recipe key -> `fingerprint` of each input file that exists (``run.json``'s ``data_files``)."""
    return {key: fingerprint(p) for key, p in _paths(cfg).items() if _exists(p)}


def differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What tells the file ``now`` apart from the ``recorded`` one (empty: the same data)."""
    out = []
    if recorded.get("size") != now["size"]:
        out.append(f"size {recorded.get('size')} -> {now['size']} bytes")
    if recorded.get("head_sha256") != now["head_sha256"]:
        out.append(f"its first {HEAD_BYTES >> 20} MiB differ")
    return out


def check_data_files(run_dir: str | Path, cfg: DataConfig) -> None:
    """Stop before any work when a file the run was trained on is missing or changed.

    ``cfg`` is the data section evaluation will read (the run's, or with ``data.path=...``
    overrides): a file given a new place is accepted when it is the same data. Runs written
    before fingerprints were recorded are not checked.
    """
    run_dir = Path(run_dir)
    meta = run_dir / "run.json"
    recorded = json.loads(meta.read_text()).get("data_files") if meta.is_file() else None
    if not recorded:
        return
    paths = _paths(cfg)
    for key, was in recorded.items():
        path = Path(paths.get(key, was["path"]))
        moved = f" (trained on {was['path']})" if str(path if is_glob(path) else path.resolve()) != was["path"] else ""
        if not _exists(path):
            raise RunDirError(f"the data file {str(path)!r} the run was trained on is missing{moved}",
                              where=f"{key} in {run_dir / 'recipe.resolved.yaml'}",
                              fix=f"put the file back, or give its new place: evtlm evaluate --run {run_dir} {key}=NEW_PATH")
        changed = differences(was, fingerprint(path))
        if changed:
            raise RunDirError(f"the data file {str(path)!r} is not the one the run was trained on{moved}: "
                              + ", ".join(changed), where=f"{key} in {run_dir / 'run.json'}",
                              fix="evaluate on the data the model was trained on (restore the file, or point "
                              f"{key}=... at a copy of it); other data gives other splits and labels")
