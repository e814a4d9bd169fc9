"""`evtlm partition --engine dask` (`evtlm.ingest.partition_dask`) on a local Dask cluster: the same
shard files, manifest and report, byte for byte, as the local engine."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

pytest.importorskip("dask.distributed", reason="the dask engine is the optional extra: pip install 'evtlm[dask]'")

from evtlm.errors import DataError  # noqa: E402
from evtlm.ingest.partition import partition_events, read_partition  # noqa: E402
from evtlm.recipe import DataConfig, SyntheticConfig  # noqa: E402
from tests.test_sources import ACTIONS, COLUMNS, _dirty, raw_log  # noqa: E402, F401  (raw_log: a fixture)


@pytest.fixture(scope="module")
def client():
    """Two in-process workers (threads): the real scheduler and task path, started in well under a second."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def logs(raw_log, tmp_path_factory):  # noqa: F811
    """A dirty CSV log in three parts (bad rows of every kind, a duplicate) and a simulated shop
    written as Parquet and as gzipped CSV parts, with its catalog."""
    from evtlm.ingest.simulate import write_shop_parts

    root = tmp_path_factory.mktemp("logs")
    head, *body = _dirty(raw_log).splitlines()
    (root / "dirty").mkdir()
    third = len(body) // 3
    for p, lines in enumerate([body[:third], body[third:2 * third], body[2 * third:]]):
        (root / "dirty" / f"part-{p}.csv").write_text("\n".join([head, *lines]) + "\n")
    for fmt in ("parquet", "csv.gz"):
        write_shop_parts(SyntheticConfig(users=80, days=21), root / f"shop-{fmt}", users_per_part=25, fmt=fmt)
    return root


def _case(logs: Path, name: str) -> DataConfig:
    dirty = dict(path=str(logs / "dirty"), columns=COLUMNS, actions=ACTIONS, on_bad_rows="skip")
    return {"dirty": DataConfig(**dirty),
            "dirty_range_subset": DataConfig(**dirty, start="2024-01-04", end="2024-01-15 12:00", max_users=23),
            "shop_parquet": DataConfig(preset="evtlm_shop", path=str(logs / "shop-parquet")),
            "shop_csv_gz": DataConfig(preset="evtlm_shop", path=str(logs / "shop-csv.gz")),
            "synthetic": DataConfig(synthetic=SyntheticConfig(users=40, days=14))}[name]


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("name,shards,chunk_rows", [
    ("dirty", 5, 200), ("dirty_range_subset", 5, 200), ("shop_parquet", 3, 500), ("shop_csv_gz", 4, 300),
    ("synthetic", 4, 1000)])
def test_the_dask_job_writes_the_local_engines_bytes(logs, client, tmp_path, name, shards, chunk_rows):
    cfg = _case(logs, name)
    local = partition_events(cfg, tmp_path / "local", shards=shards, chunk_rows=chunk_rows)
    dask = partition_events(cfg, tmp_path / "dask", shards=shards, chunk_rows=chunk_rows, engine="dask", scheduler=client)
    expected = digests(local.path)
    assert {"manifest.json", "report.json", *(f"shard-{k:05d}.parquet" for k in range(shards))} <= set(expected)
    assert digests(dask.path) == expected  # shards, manifest.json, report.json (and the catalog): byte for byte
    if name.startswith("dirty"):  # rows numbered across the parts, counted in the local engine's order
        assert len(local.report.files) == 3 and sum(local.report.dropped.values()) > 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dask", "local"]  # no staging folder left


def test_an_fsspec_url_as_the_output_holds_the_same_bytes(logs, client, tmp_path):
    import fsspec

    cfg = _case(logs, "shop_parquet")
    local = partition_events(cfg, tmp_path / "local", shards=3, chunk_rows=500)
    url = f"memory://evtlm-test-{tmp_path.name}/parts"
    part = partition_events(cfg, url, shards=3, chunk_rows=500, engine="dask", scheduler=client)
    fs, root = fsspec.core.url_to_fs(url)
    try:
        assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)) == sorted(digests(local.path))
        for name in digests(local.path):
            assert fs.cat_file(f"{root}/{name}") == (local.path / name).read_bytes(), name
        assert len(fs.ls(root.rsplit("/", 1)[0], detail=False)) == 1  # the staging folder is gone
        again = read_partition(url)
        assert again.report == part.report == local.report and again.shard(2).equals(local.shard(2))
        with pytest.raises(DataError, match="exists"):
            partition_events(cfg, url, shards=3, engine="dask", scheduler=client)
    finally:
        fs.rm(root.rsplit("/", 1)[0], recursive=True)


def test_a_bad_row_stops_both_engines_with_the_same_message(logs, client, tmp_path):
    cfg = _case(logs, "dirty").model_copy(update={"on_bad_rows": "error"})
    errors = []
    for engine in ("local", "dask"):
        with pytest.raises(DataError) as info:
            partition_events(cfg, tmp_path / engine, shards=3, chunk_rows=200, engine=engine, scheduler=client)
        errors.append(str(info.value))
    assert errors[0] == errors[1] and "part-0.csv" in errors[0]
    assert list(tmp_path.iterdir()) == []  # nothing written, no staging folder left


def test_an_unreachable_scheduler_is_a_one_line_error_naming_the_fix(logs, tmp_path, capsys):
    import dask

    from evtlm.cli.main import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  preset: evtlm_shop\n  path: {logs / 'shop-parquet'}\n")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = main(["partition", str(recipe), "--out", str(tmp_path / "p"), "--engine", "dask",
                     "--scheduler", "tcp://127.0.0.1:1", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:1'" in err and "--scheduler" in err
    assert "pip install 'evtlm[dask]'" in err
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_the_cli_on_a_local_cluster_of_processes_matches_the_local_engine(logs, tmp_path, capsys):
    """Worker processes (everything pickled, as on other machines), through the command line."""
    from evtlm.cli.main import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data:\n  preset: evtlm_shop\n  path: {logs / 'shop-csv.gz'}\n")
    common = ["partition", str(recipe), "--shards", "4", "--chunk-rows", "300", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", (tmp_path / "dask").as_uri(), "--engine", "dask", "--workers", "2"]) == 0
    assert "dask engine" in capsys.readouterr().out
    assert digests(tmp_path / "dask") == digests(tmp_path / "local")
