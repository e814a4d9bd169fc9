"""`evtlm.ingest.partition`: a log cut by user on disk holds exactly the in-memory read's events and
report, whatever the chunk and shard sizes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from evtlm.errors import DataError
from evtlm.ingest.partition import partition_events, read_partition, shard_of
from evtlm.ingest.presets import load_event_log
from evtlm.recipe import DataConfig, SyntheticConfig
from tests.test_sources import ACTIONS, COLUMNS, _dirty, raw_log  # noqa: F401  (raw_log: a fixture)


def assert_same_as_in_memory(cfg: DataConfig, part) -> None:
    log = load_event_log(cfg)
    assert part.report.to_dict() == log.report.to_dict()
    where = shard_of(log.events["user_id"], part.shards)
    for k in range(part.shards):
        expected = log.events.loc[where == k].reset_index(drop=True)
        pd.testing.assert_frame_equal(part.shard(k), expected)
    if log.catalog is not None:
        pd.testing.assert_frame_equal(part.catalog, log.catalog)


@pytest.mark.parametrize("options", [{}, {"start": "2024-01-04", "end": "2024-01-15 12:00", "max_users": 23}])
def test_a_dirty_log_cut_in_chunks_and_shards_matches_the_in_memory_read(raw_log, tmp_path, options):  # noqa: F811
    path = tmp_path / "log.csv"
    path.write_text(_dirty(raw_log))
    cfg = DataConfig(path=str(path), columns=COLUMNS, actions=ACTIONS, on_bad_rows="skip", **options)
    part = partition_events(cfg, tmp_path / "parts", shards=5, chunk_rows=200)
    assert len(part.manifest["events"]) == 5 and min(part.manifest["events"]) > 0
    assert part.report.duplicates_removed == 1 and sum(part.report.dropped.values()) > 30
    assert_same_as_in_memory(cfg, part)


@pytest.mark.parametrize("recipe_data", [
    {"preset": "taobao", "path": "taobao/UserBehavior_head84k.csv"},
    {"preset": "yoochoose", "path": "yoochoose/yoochoose-clicks-100k_train_full.txt"},
    {"preset": "online_retail", "path": "online_retail/online_retail.csv.gz", "options": {"cancellations": "drop"}},
], ids=["taobao", "yoochoose", "online_retail"])
def test_the_shipped_real_logs_partition_to_the_in_memory_events(shared_data, tmp_path, recipe_data):
    cfg = DataConfig(**{**recipe_data, "path": str(shared_data / recipe_data["path"])})
    part = partition_events(cfg, tmp_path / "parts", shards=7, chunk_rows=20_000)
    in_memory = cfg.preset == "online_retail"  # its reader builds the catalog from the whole table
    assert part.manifest["read"].startswith("in memory") == in_memory
    assert_same_as_in_memory(cfg, part)


def test_each_process_reads_only_its_own_shards(tmp_path):
    part = partition_events(DataConfig(synthetic=SyntheticConfig(users=50, days=14)), tmp_path / "p", shards=6)
    seen = [[k for k, _ in part.iter_shards((rank, 4))] for rank in range(4)]
    assert seen == [[0, 4], [1, 5], [2], [3]]
    users = [set(ev["user_id"]) for _, ev in part.iter_shards()]
    assert sum(map(len, users)) == len(set().union(*users)) == part.report.users


def test_a_failed_partition_leaves_nothing_and_an_existing_folder_is_kept(tmp_path, monkeypatch):
    import evtlm.ingest.partition as partition

    cfg = DataConfig(synthetic=SyntheticConfig(users=30, days=14))
    out = tmp_path / "p"
    partition_events(cfg, out, shards=2)
    with pytest.raises(DataError, match="exists"):
        partition_events(cfg, out, shards=3)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(partition, "_write_tail", boom)
    with pytest.raises(OSError, match="disk full"):
        partition_events(cfg, out, shards=3, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no temporary folder left
    assert read_partition(out).shards == 2  # the complete one is untouched
    (tmp_path / "half").mkdir()
    with pytest.raises(DataError, match="not a partition folder"):
        read_partition(tmp_path / "half")


def test_partition_cli_prints_rates_and_writes_the_folder(tmp_path, capsys):
    from evtlm.cli.main import main

    shop = tmp_path / "shop"
    assert main(["simulate", "--users", "60", "--part-users", "20", "--out", str(shop), "--quiet"]) == 0
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  preset: evtlm_shop\n  path: {shop}\n")
    capsys.readouterr()
    assert main(["partition", str(recipe), "--out", str(tmp_path / "parts"), "--shards", "4", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "events/s" in text and "4 shards" in text
    manifest = json.loads((tmp_path / "parts" / "manifest.json").read_text())
    assert manifest["shards"] == 4 and np.sum(manifest["events"]) == read_partition(tmp_path / "parts").report.rows_kept


def test_a_folder_of_simulated_parts_with_its_visit_ids_and_catalog(tmp_path):
    from evtlm.ingest.simulate import write_shop_parts

    write_shop_parts(SyntheticConfig(users=80, days=21), tmp_path / "shop", users_per_part=25)
    cfg = DataConfig(preset="evtlm_shop", path=str(tmp_path / "shop"))
    part = partition_events(cfg, tmp_path / "parts", shards=3, chunk_rows=500)
    assert part.manifest["read"].startswith("in chunks") and part.catalog is not None
    assert_same_as_in_memory(cfg, part)  # visit ids come from the log here: counted as a union


def test_a_partition_folder_is_a_data_path_prepare_reads_as_the_original(tmp_path, monkeypatch):
    from evtlm.data.prepare import prepare
    from evtlm.recipe import load_recipe
    from tests.test_evaluate import REPO, TINY

    monkeypatch.setenv("EVTLM_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(REPO / "recipes/purchase.yaml", TINY)
    part = partition_events(recipe.data, tmp_path / "parts", shards=3)
    direct = prepare(recipe, cache_dir=tmp_path / "cache", progress=False, use_cache=False)
    again = prepare(load_recipe(REPO / "recipes/purchase.yaml", [*TINY, f"data.path={part.path}"]),
                    cache_dir=tmp_path / "cache", progress=False, use_cache=False)
    assert again.report["events"]["rows_kept"] == direct.report["events"]["rows_kept"]
    for split in ("train", "valid", "test"):  # the same examples (users come in shard order, not file order)
        a, b = (sorted(map(tuple, p.datasets[split]["input_ids"])) for p in (direct, again))
        assert a == b, split


def test_the_dask_engine_without_its_extra_is_a_one_line_error_naming_the_fix(tmp_path, monkeypatch, capsys):
    """(The engine itself: tests/test_partition_dask.py, which needs the extra.)"""
    import sys

    from evtlm.cli.main import main

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if `pip install 'evtlm[dask]'` never ran
    cfg = DataConfig(synthetic=SyntheticConfig(users=20, days=7))
    with pytest.raises(DataError, match=r"pip install 'evtlm\[dask\]'"):
        partition_events(cfg, tmp_path / "p", shards=2, engine="dask")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  synthetic:\n    users: 20\n")
    assert main(["partition", str(recipe), "--out", str(tmp_path / "p"), "--engine", "dask", "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'evtlm[dask]'" in err and "--engine local" in err
    assert not (tmp_path / "p").exists()
