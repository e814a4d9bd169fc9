"""Event ingestion: formats, timestamps, mapping, sessions, filters, and every bad-input message."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evtlm.errors import DataError
from evtlm.events import derive_sessions, read_events
from evtlm.readers import data_rows_after_skips
from evtlm.recipe import DataConfig

HEADER = "user,item,what,ts\n"
ROWS = "1,a,pv,1511544070\n1,b,buy,1511544130\n2,a,pv,1511600000\n2,c,cart,1511600060\n"
MAP = {"pv": "view", "buy": "purchase", "cart": "cart"}
COLS = {"user": "user", "item": "item", "action": "what", "timestamp": "ts"}


def cfg(path: Path | str, **kw) -> DataConfig:
    base = dict(path=str(path), columns=COLS, actions=MAP)
    base.update(kw)
    return DataConfig(**base)


def write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def canonical(df: pd.DataFrame) -> list[list[str]]:
    return df[["user_id", "item_id", "action"]].astype(str).values.tolist()


EXPECTED = [["1", "a", "view"], ["1", "b", "purchase"], ["2", "a", "view"], ["2", "c", "cart"]]


# ------------------------------------------------------------------------------------ formats
@pytest.mark.parametrize("name", ["log.csv", "log.csv.gz", "log.txt"])
def test_csv_plain_gz_and_sniffed(tmp_path: Path, name: str) -> None:
    log = read_events(cfg(write(tmp_path, HEADER + ROWS, name)))
    assert canonical(log.events) == EXPECTED
    assert str(log.events["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert log.report.rows_read == 4 and log.report.rows_kept == 4
    assert log.report.events_per_action == {"view": 2, "cart": 1, "purchase": 1}


def test_tsv_semicolon_and_delimiter_override(tmp_path: Path) -> None:
    tsv = write(tmp_path, (HEADER + ROWS).replace(",", "\t"), "log.tsv")
    assert canonical(read_events(cfg(tsv)).events) == EXPECTED
    semi = write(tmp_path, (HEADER + ROWS).replace(",", ";"), "log.dat")
    assert canonical(read_events(cfg(semi)).events) == EXPECTED  # sniffed from the first line
    assert canonical(read_events(cfg(semi, delimiter=";", format="csv")).events) == EXPECTED


def test_parquet_and_jsonl(tmp_path: Path) -> None:
    df = pd.DataFrame({"user": [1, 1, 2, 2], "item": ["a", "b", "a", "c"], "what": ["pv", "buy", "pv", "cart"],
                       "ts": [1511544070, 1511544130, 1511600000, 1511600060]})
    df.to_parquet(tmp_path / "log.parquet")
    assert canonical(read_events(cfg(tmp_path / "log.parquet")).events) == EXPECTED
    text = df.to_json(orient="records", lines=True)
    for name in ("log.jsonl", "log.jsonl.gz"):
        assert canonical(read_events(cfg(write(tmp_path, text, name))).events) == EXPECTED


def test_headerless_file_with_column_names(tmp_path: Path) -> None:
    path = write(tmp_path, ROWS)
    log = read_events(cfg(path, has_header=False, column_names=["user", "item", "what", "ts"]))
    assert canonical(log.events) == EXPECTED
    with pytest.raises(DataError, match="has 3 names but the first line has 4 fields"):
        read_events(cfg(path, has_header=False, column_names=["user", "item", "what"]))


# --------------------------------------------------------------------------------- timestamps
@pytest.mark.parametrize("scale,unit", [(1, "s"), (1000, "ms"), (1_000_000, "us")])
def test_unix_unit_detected_from_magnitude(tmp_path: Path, scale: int, unit: str) -> None:
    text = HEADER + "".join(f"1,a,pv,{1511544070 * scale + i}\n" for i in range(3))
    ts = read_events(cfg(write(tmp_path, text))).events["timestamp"]
    assert ts.iloc[0] == pd.Timestamp(1511544070 * scale, unit=unit, tz="UTC")
    if scale < 1_000_000:  # an explicit unit wins over the magnitude
        forced = read_events(cfg(write(tmp_path, text), timestamp={"unit": "ms"})).events["timestamp"]
        assert forced.iloc[0] == pd.Timestamp(1511544070 * scale, unit="ms", tz="UTC")
    else:  # microseconds read as ms overflow: unparseable, not wrapped around
        with pytest.raises(DataError, match="unparseable timestamp.*expected unix time in milliseconds"):
            read_events(cfg(write(tmp_path, text), timestamp={"unit": "ms"}))


def test_fractional_seconds_are_exact_to_the_microsecond(tmp_path: Path) -> None:
    log = read_events(cfg(write(tmp_path, HEADER + "1,a,pv,1396860669.277\n")))
    assert log.events["timestamp"].iloc[0] == pd.Timestamp("2014-04-07 08:51:09.277", tz="UTC")


def test_iso_strings_naive_in_timezone_and_offsets(tmp_path: Path) -> None:
    text = HEADER + "1,a,pv,2010-12-01 08:26:00\n2,a,pv,2010-12-01T08:26:00+01:00\n"
    ts = read_events(cfg(write(tmp_path, text), timestamp={"timezone": "Asia/Tokyo"})).events["timestamp"]
    assert ts.tolist() == [pd.Timestamp("2010-11-30 23:26", tz="UTC"), pd.Timestamp("2010-12-01 07:26", tz="UTC")]


def test_strptime_format(tmp_path: Path) -> None:
    text = HEADER + "1,a,pv,01/12/2010 08:26\n"
    log = read_events(cfg(write(tmp_path, text), timestamp={"format": "%d/%m/%Y %H:%M"}))
    assert log.events["timestamp"].iloc[0] == pd.Timestamp("2010-12-01 08:26", tz="UTC")


# ------------------------------------------------------------------------------ actions, extras
def test_canonical_values_constant_action_and_drop_actions(tmp_path: Path) -> None:
    text = HEADER + "1,a,view,1\n1,b,purchase,2\n"
    assert read_events(cfg(write(tmp_path, text), actions={})).events["action"].tolist() == ["view", "purchase"]
    clicks = write(tmp_path, "user,item,ts\n1,a,1\n1,b,2\n", "clicks.csv")
    log = read_events(DataConfig(path=str(clicks), columns={"user": "user", "item": "item", "timestamp": "ts",
                                                             "action": None}, constant_action="view"))
    assert log.events["action"].tolist() == ["view", "view"]
    log = read_events(cfg(write(tmp_path, HEADER + ROWS + "3,d,clik,5\n"), drop_actions=["clik"]))
    assert log.report.dropped == {"action 'clik' in data.drop_actions": 1}
    assert log.report.dropped_rows["action 'clik' in data.drop_actions"] == [5]
    assert log.report.raw_actions == {"pv": 2, "buy": 1, "cart": 1, "clik": 1}


def test_extras_catalog_and_max_users(tmp_path: Path) -> None:
    text = "user,item,what,ts,cost,cat\n" + "".join(f"{u},i{u % 3},pv,{100 + u},{u}.5,c{u % 2}\n" for u in range(20))
    path = write(tmp_path, text)
    write(tmp_path, "sku,name,cost\ni0,Lamp,2.5\ni1,Mug,3\ni1,Mug again,4\n", "cat.csv")
    c = cfg(path, columns=COLS | {"extra": {"price": "cost", "category": "cat"}},
            catalog={"path": str(tmp_path / "cat.csv"), "item": "sku", "fields": {"title": "name", "price": "cost"}})
    log = read_events(c)
    assert log.events["price"].dtype == np.float64 and log.events["price"].iloc[0] == 0.5
    assert log.events["category"].iloc[0] == "c0"
    assert log.catalog.to_dict("list") == {"item_id": ["i0", "i1"], "title": ["Lamp", "Mug"], "price": [2.5, 3.0]}
    assert any("missing from the catalog" in n for n in log.report.notes)  # i2 has no catalog row
    # the user subset depends on the ids, not on the file order
    sub = set(read_events(c.model_copy(update={"max_users": 5})).events["user_id"])
    shuffled = write(tmp_path, text.splitlines()[0] + "\n" + "\n".join(text.splitlines()[1:][::-1]) + "\n", "rev.csv")
    sub2 = set(read_events(c.model_copy(update={"max_users": 5, "path": str(shuffled)})).events["user_id"])
    assert len(sub) == 5 and sub == sub2


# ------------------------------------------------------------------------- dedupe, sessions, range
def test_duplicates_removed_and_counted(tmp_path: Path) -> None:
    log = read_events(cfg(write(tmp_path, HEADER + ROWS + "1,b,buy,1511544130\n")))
    assert log.report.duplicates_removed == 1 and log.report.rows_kept == 4
    assert "data rows 5" in log.report.notes[0]


def test_sessions_by_gap_unique_across_users(tmp_path: Path) -> None:
    text = HEADER + "1,a,pv,0\n1,b,pv,600\n1,c,pv,4000\n2,a,pv,0\n"
    log = read_events(cfg(write(tmp_path, text), timestamp={"unit": "s"}))
    assert log.events["session_id"].tolist() == ["1-1", "1-1", "1-2", "2-1"]
    log = read_events(cfg(write(tmp_path, text), timestamp={"unit": "s"}, session_gap_minutes=120))
    assert log.report.sessions == 2
    users = pd.Series(["a", "a", "a-1"])
    ts = pd.Series(pd.to_datetime([0, 1, 0], unit="s", utc=True))
    assert derive_sessions(users, ts, 30).nunique() == 2  # 'a-1' (user a) vs 'a-1-1' (user a-1)


def test_session_column_kept(tmp_path: Path) -> None:
    text = "user,item,what,ts,visit\n1,a,pv,1,s9\n1,b,pv,2,\n"
    log = read_events(cfg(write(tmp_path, text), columns=COLS | {"session": "visit"}))
    assert log.events["session_id"].tolist() == ["s9", "1-1"]  # a blank session id is derived


def test_start_end_filter_counted(tmp_path: Path) -> None:
    log = read_events(cfg(write(tmp_path, HEADER + ROWS), start="2017-11-24 17:21:30", end="2017-11-25 08:00"))
    assert log.report.rows_kept == 1
    assert log.report.dropped == {"before data.start (2017-11-24 17:21:30 UTC)": 1,
                                  "at or after data.end (2017-11-25 08:00 UTC)": 2}
    assert log.report.dropped_rows["at or after data.end (2017-11-25 08:00 UTC)"] == [3, 4]


# --------------------------------------------------------------------------------- bad input
def test_missing_file_suggests_the_closest_name(tmp_path: Path) -> None:
    write(tmp_path, HEADER + ROWS, "events.csv")
    with pytest.raises(DataError) as err:
        read_events(cfg("event.csv"), base_dir=tmp_path)
    assert "file not found" in str(err.value) and "event.csv" in str(err.value)
    assert "did you mean 'events.csv'" in str(err.value)


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty file.*has no bytes"):
        read_events(cfg(write(tmp_path, "")))
    with pytest.raises(DataError, match="no data rows"):
        read_events(cfg(write(tmp_path, HEADER)))
    with pytest.raises(DataError, match="empty file"):
        read_events(cfg(write(tmp_path, "", "log.csv.gz")))


def test_misspelled_columns_listed_together_with_suggestions(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        read_events(cfg(write(tmp_path, HEADER + ROWS), columns=COLS | {"user": "usr", "timestamp": "tss"}))
    msg = str(err.value)
    assert "columns not found" in msg
    assert "'usr' (data.columns.user; did you mean 'user'?)" in msg
    assert "'tss' (data.columns.timestamp; did you mean 'ts'?)" in msg
    assert "log.csv (columns: user, item, what, ts)" in msg


def test_headerless_file_read_with_a_header_is_explained(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="the first line looks like data, not a header"):
        read_events(cfg(write(tmp_path, "1,2,3,4\n5,6,7,8\n")))


def test_unparseable_timestamps_name_rows_values_and_count(tmp_path: Path) -> None:
    text = HEADER + "1,a,pv,2017-11-25\n1,b,pv,yesterday\n2,a,pv,2017-13-45\n2,c,pv,\n"
    with pytest.raises(DataError) as err:
        read_events(cfg(write(tmp_path, text)))
    msg = str(err.value)
    assert "3 rows with unparseable timestamp: 'yesterday', '2017-13-45', ''" in msg
    assert "expected ISO-8601 times" in msg
    assert "log.csv, column 'ts', rows 2, 3, 4 (3 rows) (1-based data rows, header line not counted)" in msg
    assert "data.on_bad_rows: skip" in msg
    log = read_events(cfg(write(tmp_path, text), on_bad_rows="skip"))
    assert log.report.dropped == {"unparseable timestamp": 3}
    assert log.report.dropped_rows == {"unparseable timestamp": [2, 3, 4]}


def test_unmapped_actions_list_known_values_and_the_fix(tmp_path: Path) -> None:
    text = HEADER + ROWS + "3,a,clik,1511600070\n3,b,clik,1511600080\n"
    with pytest.raises(DataError) as err:
        read_events(cfg(write(tmp_path, text)))
    msg = str(err.value)
    assert "2 rows with unmapped action value: 'clik'" in msg
    assert "pv -> view, buy -> purchase, cart -> cart" in msg
    assert "column 'what', rows 5, 6 (2 rows)" in msg
    assert "data.actions" in msg and "data.drop_actions" in msg
    with pytest.raises(DataError, match="a canonical action \\(view, cart, remove_from_cart"):
        read_events(cfg(write(tmp_path, text), actions={}))


def test_empty_user_and_item_ids(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        read_events(cfg(write(tmp_path, HEADER + ROWS + " ,a,pv,1511600070\n")))
    assert "1 row with empty user id: ' ' (expected a non-empty id)" in str(err.value)
    assert "column 'user', row 5 (1 row)" in str(err.value)
    with pytest.raises(DataError, match="empty item id.*column 'item', row 2 \\(1 row\\)"):
        read_events(cfg(write(tmp_path, HEADER + "1,a,pv,1\n1,,pv,2\n")))


def test_malformed_lines_reported_by_file_line(tmp_path: Path) -> None:
    text = HEADER + "1,a,pv,1\n1,b,pv\n1,c,pv,3,extra\n2,d,pv,4\n2,e,zz,5\n"
    with pytest.raises(DataError) as err:
        read_events(cfg(write(tmp_path, text)))
    msg = str(err.value)
    assert "2 malformed lines: expected 4 fields separated by ',', line 3 has 3 ('1,b,pv')" in msg
    assert "file lines 3, 4 (2 lines; data rows 2, 3)" in msg
    log = read_events(cfg(write(tmp_path, text), on_bad_rows="skip"))
    assert log.report.dropped["malformed line (wrong number of fields)"] == 2
    # rows after the skipped lines keep their own numbers: 'zz' is data row 5
    assert log.report.dropped_rows["unmapped action value"] == [5]
    assert log.report.rows_read == 5 and log.report.rows_kept == 2


def test_non_numeric_extra_and_nothing_left(tmp_path: Path) -> None:
    text = "user,item,what,ts,cost\n1,a,pv,1,2.5\n1,b,pv,2,cheap\n1,c,pv,3,\n"
    with pytest.raises(DataError, match="non-numeric price: 'cheap'.*column 'cost', row 2"):
        read_events(cfg(write(tmp_path, text), columns=COLS | {"extra": {"price": "cost"}}))
    with pytest.raises(DataError, match="no events left.*after filtering"):
        read_events(cfg(write(tmp_path, HEADER + ROWS), start="2030-01-01"))


def test_row_numbers_after_skipped_lines() -> None:
    assert data_rows_after_skips(3, []).tolist() == [1, 2, 3]
    assert data_rows_after_skips(3, [1, 2]).tolist() == [3, 4, 5]


def test_jsonl_bad_rows_are_numbered_by_line(tmp_path: Path) -> None:
    text = '{"user": 1, "item": "a", "what": "pv", "ts": 5}\n{"item": "b", "what": "pv", "ts": 6}\n'
    with pytest.raises(DataError, match="empty user id.*row 2 \\(1 row\\) \\(1-based data rows = file lines\\)"):
        read_events(cfg(write(tmp_path, text, "log.jsonl")))


def test_text_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes((HEADER + "1,café,pv,1511544070\n").encode("latin-1"))
    with pytest.raises(DataError, match="invalid UTF8.*data.encoding \\('utf-8'; e.g. latin-1"):
        read_events(cfg(path))
    assert read_events(cfg(path, encoding="latin-1")).events["item_id"].tolist() == ["café"]
