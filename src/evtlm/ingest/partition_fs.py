"""Where `evtlm.ingest.partition` writes: a local folder or one of an fsspec filesystem (`Folder`).

A local partition is written to a temporary sibling and renamed into place (atomic); an object
store has no rename, so its files are moved one by one and ``manifest.json``, which makes a
folder a partition (`evtlm.ingest.partition.read_partition`), comes last. fsspec is imported only for
a URL (``s3://``, ``gs://``, ``memory://``; ``file://`` is a local path).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from evtlm.fsio import TMP_PREFIX, fsync_dir, fsync_tree, remove_tree

MANIFEST = "manifest.json"

__all__ = ["Folder", "filesystem"]


class Folder:
    """A folder a partition is written to: local (pathlib: a temporary sibling renamed into place)
    or of an fsspec filesystem (``fs``: object stores have no rename, so the files are moved and
    ``manifest.json``, which makes a folder a partition, comes last)."""

    def __init__(self, root: str | Path, fs: Any = None) -> None:
        self.root, self.fs = (Path(root) if fs is None else str(root).rstrip("/")), fs

    @classmethod
    def at(cls, out: str | Path) -> Folder:
        fs, root = filesystem(out)
        return cls(root, fs)

    def file(self, name: str) -> Any:
        return self.root / name if self.fs is None else f"{self.root}/{name}"

    def exists(self, name: str | None = None) -> bool:
        path = self.root if name is None else self.file(name)
        return Path(path).exists() if self.fs is None else self.fs.exists(path)

    def write_table(self, name: str, table: pa.Table) -> None:
        if self.fs is None:
            Path(self.file(name)).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, self.file(name), filesystem=self.fs)

    def writer(self, name: str, schema: pa.Schema) -> pq.ParquetWriter:
        if self.fs is None:
            Path(self.file(name)).parent.mkdir(parents=True, exist_ok=True)
        return pq.ParquetWriter(self.file(name), schema, filesystem=self.fs)

    def read_table(self, name: str) -> pa.Table:
        return pq.read_table(self.file(name), filesystem=self.fs)

    def write_text(self, name: str, text: str) -> None:
        if self.fs is None:
            Path(self.file(name)).write_text(text)
        else:
            self.fs.pipe_file(self.file(name), text.encode())

    def read_text(self, name: str) -> str:
        return Path(self.file(name)).read_text() if self.fs is None else self.fs.cat_file(self.file(name)).decode()

    def remove(self, name: str | None = None) -> None:
        path = self.root if name is None else self.file(name)
        if self.fs is None:
            remove_tree(Path(path))
        elif self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def temporary(self) -> Folder:
        """A new, empty sibling to write into."""
        if self.fs is None:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            return Folder(tempfile.mkdtemp(dir=self.root.parent, prefix=f"{TMP_PREFIX}{self.root.name}-"))
        parent, _, name = self.root.rpartition("/")
        tmp = Folder(f"{parent}/{TMP_PREFIX}{name}-{uuid.uuid4().hex[:12]}", self.fs)
        self.fs.makedirs(tmp.root, exist_ok=True)
        return tmp

    def replace_with(self, tmp: Folder) -> None:
        """Put the complete ``tmp`` in this folder's place (an existing one is replaced)."""
        if self.fs is None:
            fsync_tree(tmp.root)
            if self.root.exists():
                aside = self.root.with_name(f"{TMP_PREFIX}discard-{self.root.name}-{os.getpid()}")
                self.root.rename(aside)
                remove_tree(aside)
            tmp.root.rename(self.root)
            fsync_dir(self.root.parent)
            return
        self.remove()
        names = sorted(p.rsplit("/", 1)[-1] for p in self.fs.ls(tmp.root, detail=False))
        for name in [n for n in names if n != MANIFEST] + [MANIFEST]:
            self.fs.mv(tmp.file(name), self.file(name))
        tmp.remove()


def filesystem(path: str | Path) -> tuple[Any, str | Path]:
    """(None, local path) for a plain or ``file://`` path, else (fsspec filesystem, its path)."""
    if isinstance(path, Path) or "://" not in str(path):
        return None, Path(path).expanduser()
    import fsspec

    fs, root = fsspec.core.url_to_fs(str(path))
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return None, Path(root)
    return fs, root
