"""Logs in several files (folders, globs, Hive partitions) and logs read in chunks: the same
events, row numbers and report as one file read whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evtlm.errors import DataError
from evtlm.ingest.events import Ingest, read_events
from evtlm.recipe import DataConfig, SyntheticConfig
from evtlm.ingest.simulate import simulate_shop

REPO = Path(__file__).resolve().parents[1]

COLUMNS = {"user": "user", "item": "item", "action": "what", "timestamp": "ts"}
ACTIONS = {"pv": "view", "cart": "cart", "buy": "purchase"}


@pytest.fixture(scope="module")
def raw_log() -> pd.DataFrame:
    """A simulated shop as a raw export: string ids, raw action words, unix seconds, in time order."""
    ev = simulate_shop(SyntheticConfig(users=60, items=50, days=20, seed=3)).events
    words = {"view": "pv", "cart": "cart", "purchase": "buy"}
    raw = pd.DataFrame({"user": ev["user_id"].astype(str), "item": ev["item_id"].astype(str),
                        "what": ev["action"].astype(str).map(words).fillna("pv"),
                        "ts": (ev["timestamp"].astype("int64") // 10**9).astype(str)})
    return raw.sort_values("ts", kind="stable").reset_index(drop=True)


def split(df: pd.DataFrame, n: int) -> list[pd.DataFrame]:
    """``df`` in ``n`` consecutive pieces (as a writer with n tasks would leave it)."""
    return [df.iloc[idx] for idx in np.array_split(np.arange(len(df)), n)]


def _cfg(path, **kw) -> DataConfig:
    return DataConfig(path=str(path), columns=COLUMNS, actions=ACTIONS, **kw)


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.events, b.events)
    ra, rb = a.report.to_dict(), b.report.to_dict()
    for key in ("source", "files"):
        ra.pop(key), rb.pop(key)
    assert ra == rb


def test_a_hive_partitioned_parquet_folder_reads_as_the_one_file(raw_log, tmp_path):
    whole = tmp_path / "log.csv"
    raw_log.to_csv(whole, index=False)
    day = pd.to_datetime(raw_log["ts"].astype(int), unit="s").dt.strftime("%Y-%m-%d")
    folder = tmp_path / "export"
    for d, part in raw_log.groupby(day, sort=True):
        out = folder / f"dt={d}"
        out.mkdir(parents=True)
        for k, piece in enumerate(split(part, 2)):  # two files a day, as a writer with 2 tasks
            pq.write_table(pa.Table.from_pandas(piece.astype(str), preserve_index=False), out / f"part-{k}.parquet")
    (folder / "_SUCCESS").write_text("")
    one, parts = read_events(_cfg(whole)), read_events(_cfg(folder))
    _same(one, parts)
    files = parts.report.files
    assert len(files) == 2 * day.nunique() and files[0]["first_row"] == 1
    assert sum(f["rows"] for f in files) == len(raw_log) == parts.report.rows_read
    assert all(b["first_row"] == a["first_row"] + a["rows"] for a, b in zip(files, files[1:]))
    # the folder's key=value names are a column too
    by_day = read_events(DataConfig(path=str(folder), columns={**COLUMNS, "extra": {"day": "dt"}}, actions=ACTIONS))
    assert set(by_day.events["day"]) == set(day)
    first = by_day.events.loc[by_day.events["timestamp"].idxmin()]
    assert first["day"] == first["timestamp"].strftime("%Y-%m-%d")


def test_a_glob_of_csv_files_with_their_own_column_order(raw_log, tmp_path):
    pieces = split(raw_log, 3)
    for k, piece in enumerate(pieces):
        cols = list(piece.columns) if k != 1 else list(reversed(piece.columns))
        piece[cols].to_csv(tmp_path / f"events-{k}.csv", index=False)
    (tmp_path / "notes.md").write_text("not data")
    raw_log.to_csv(tmp_path / "whole.csv.bak", index=False)
    _same(read_events(_cfg(tmp_path / "events-*.csv")), read_events(_whole(raw_log, tmp_path)))


def _whole(raw_log, tmp_path) -> DataConfig:
    path = tmp_path / "reference" / "log.csv"
    path.parent.mkdir(exist_ok=True)
    raw_log.to_csv(path, index=False)
    return _cfg(path)


def test_bad_rows_in_a_later_file_are_named_by_that_file_and_its_own_rows(raw_log, tmp_path):
    a, b = split(raw_log, 2)
    b = b.copy()
    b.iloc[4, b.columns.get_loc("ts")] = "yesterday"
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(DataError) as err:
        read_events(_cfg(tmp_path))
    assert "b.csv" in str(err.value) and "row 5 (1 row)" in str(err.value)
    skipped = read_events(_cfg(tmp_path, on_bad_rows="skip"))
    [row] = skipped.report.dropped_rows["unparseable timestamp"]
    assert row == len(a) + 5  # numbered across the files: report.files says where b.csv starts
    assert skipped.report.files[1]["first_row"] == len(a) + 1


def test_one_log_mixing_formats_and_an_empty_folder_are_clear_errors(raw_log, tmp_path):
    raw_log.to_csv(tmp_path / "a.csv", index=False)
    raw_log.to_json(tmp_path / "b.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match="mix formats"):
        read_events(_cfg(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no data files"):
        read_events(_cfg(tmp_path / "empty"))
    with pytest.raises(DataError, match="no data files match"):
        read_events(_cfg(tmp_path / "*.parquet"))


def _dirty(raw_log: pd.DataFrame) -> str:
    """The raw log as CSV text with every kind of bad row, spread over the whole file."""
    lines = raw_log.to_csv(index=False).splitlines()
    rng = np.random.default_rng(0)
    for k, at in enumerate(sorted(rng.choice(np.arange(2, len(lines)), size=40, replace=False))):
        u, i, w, t = lines[at].split(",")
        lines[at] = [f",{i},{w},{t}", f"{u},{i},{w},soon", f"{u},{i},jump,{t}", f"{u},{i},{w},{t},extra",
                     f"{u},{i},{w},{int(t) * 1000}"][k % 5]
    lines.insert(len(lines) // 2, lines[len(lines) // 2])  # an exact duplicate
    return "\n".join(lines) + "\n"


def _chunked(cfg: DataConfig, chunk_rows: int):
    ingest = Ingest(cfg)
    frames = [ingest.to_events(chunk) for chunk in ingest.chunks(chunk_rows)]
    return ingest.finish(frames)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_log_read_in_chunks_gives_the_same_events_and_report(raw_log, tmp_path, fmt):
    text = _dirty(raw_log)
    path = tmp_path / "log.csv"
    path.write_text(text)
    if fmt != "csv":  # the same rows (malformed lines aside: only delimited text has those)
        table = pd.read_csv(path, dtype=str, on_bad_lines="skip", keep_default_na=False)
        path = tmp_path / f"log.{fmt}"
        if fmt == "jsonl":
            table.to_json(path, orient="records", lines=True)
        else:
            pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path, row_group_size=97)
    cfg = _cfg(path, on_bad_rows="skip")
    whole = read_events(cfg)
    assert sum(whole.report.dropped.values()) > 30 and whole.report.duplicates_removed == 1
    assert len(list(Ingest(cfg).chunks(50))) > 10  # (CSV reads 4 KiB blocks at least: ~180 short lines)
    for rows in (50, 333, 10**6):
        _same(_chunked(cfg, rows), whole)
        assert _chunked(cfg, rows).report.source == whole.report.source


def test_chunks_of_a_folder_stream_one_file_at_a_time(raw_log, tmp_path):
    for k, piece in enumerate(split(raw_log, 4)):
        piece.to_json(tmp_path / f"part-{k}.jsonl", orient="records", lines=True)
    ingest = Ingest(_cfg(tmp_path))
    sizes = [(chunk.source, len(chunk.df)) for chunk in ingest.chunks(100)]
    assert len({s for s, _ in sizes}) == 4 and max(n for _, n in sizes) <= 100
    assert [f["rows"] for f in ingest.report.files] == [len(p) for p in split(raw_log, 4)]


def test_validate_data_reads_a_folder_and_lists_its_files(raw_log, tmp_path, capsys):
    from evtlm.cli.main import main

    for k, piece in enumerate(split(raw_log, 3)):
        pq.write_table(pa.Table.from_pandas(piece, preserve_index=False), tmp_path / f"part-{k:05d}.snappy.parquet")
    out = tmp_path / "report.json"
    code = main(["validate-data", str(tmp_path), "--user-col", "user", "--item-col", "item", "--action-col", "what",
                 "--time-col", "ts", "--map", "pv=view", "--map", "cart=cart", "--map", "buy=purchase",
                 "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "(3 files)" in text and "part-00002.snappy.parquet" in text
    assert json.loads(out.read_text())["rows_kept"] == len(raw_log)


def test_a_simulated_shop_in_parquet_parts_goes_through_validate_prepare_and_finetune(tmp_path, monkeypatch, capsys):
    """`evtlm simulate --part-users` writes a folder; the folder is the recipe's data.path."""
    from evtlm.cli.main import main
    from evtlm.ingest.simulate import simulate_parts
    from tests.test_evaluate import TINY

    shop = tmp_path / "shop"
    assert main(["simulate", "--users", "90", "--items", "40", "--days", "28", "--part-users", "30",
                 "--out", str(shop), "--quiet"]) == 0
    assert sorted(p.name for p in shop.iterdir()) == [f"part-0000{k}.parquet" for k in range(3)]
    assert (tmp_path / "shop.catalog.csv").is_file()
    cfg = SyntheticConfig(users=90, items=40, days=28)
    expected = sum(len(log.events) for log in simulate_parts(cfg, 30))
    data = ["data.preset=evtlm_shop", f"data.path={shop}"]
    assert main(["validate-data", str(shop), "--preset", "evtlm_shop", "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["rows_kept"] == expected and len(report["files"]) == 3 and report["catalog_items"] == 40
    monkeypatch.setenv("EVTLM_CACHE", str(tmp_path / "cache"))
    assert main(["prepare", str(REPO / "recipes/purchase.yaml"), *TINY, *data, "--json", str(tmp_path / "p.json"), "--quiet"]) == 0
    assert json.loads((tmp_path / "p.json").read_text())["events"]["rows_kept"] == expected
    capsys.readouterr()
    assert main(["finetune", str(REPO / "recipes/purchase.yaml"), *TINY, *data, f"output.dir={tmp_path / 'runs'}",
                 "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "runs" / "purchase" / "metrics.json").read_text())
    assert metrics["methods"]["model"]["roc_auc"] > 0
