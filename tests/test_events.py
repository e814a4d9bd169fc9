"""Event ingestion: formats, timestamps, mapping, sessions, filters, and every bad-input message."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evtlm.errors import DataError
from evtlm.ingest.events import derive_sessions, read_events
from evtlm.ingest.readers import data_rows_after_skips
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
    forced = read_events(cfg(write(tmp_path, text), timestamp={"unit": unit})).events["timestamp"]
    assert forced.iloc[0] == ts.iloc[0]  # the right explicit unit reads the same times


@pytest.mark.parametrize("scale,unit", [(1, "s"), (1000, "ms"), (1_000_000, "us")])
def test_a_wrong_explicit_unit_names_the_unit_the_values_fit(tmp_path: Path, scale: int, unit: str) -> None:
    """Issue 12 (2): seconds read as ms were January 1970 and ms read as seconds "unparseable";
    either way the message now says what the values look like and which unit to set."""
    text = HEADER + "".join(f"1,a,pv,{1511544070 * scale + i}\n" for i in range(3))
    wrong = "ms" if unit != "ms" else "s"
    words = {"s": "seconds", "ms": "milliseconds", "us": "microseconds"}
    with pytest.raises(DataError, match=rf"3 rows with timestamp that looks like {words[unit]} \(column read as "
                       rf"{words[wrong]}\).*rows 1, 2, 3.*set data.timestamp.unit: {unit} "
                       rf"\(validate-data: --time-unit {unit}"):
        read_events(cfg(write(tmp_path, text), timestamp={"unit": wrong}))


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
    text = HEADER + "1,a,view,1511544001\n1,b,purchase,1511544002\n"
    assert read_events(cfg(write(tmp_path, text), actions={})).events["action"].tolist() == ["view", "purchase"]
    clicks = write(tmp_path, "user,item,ts\n1,a,1511544001\n1,b,1511544002\n", "clicks.csv")
    log = read_events(DataConfig(path=str(clicks), columns={"user": "user", "item": "item", "timestamp": "ts",
                                                             "action": None}, constant_action="view"))
    assert log.events["action"].tolist() == ["view", "view"]
    log = read_events(cfg(write(tmp_path, HEADER + ROWS + "3,d,clik,1511544005\n"), drop_actions=["clik"]))
    assert log.report.dropped == {"action 'clik' in data.drop_actions": 1}
    assert log.report.dropped_rows["action 'clik' in data.drop_actions"] == [5]
    assert log.report.raw_actions == {"pv": 2, "buy": 1, "cart": 1, "clik": 1}


def test_extras_catalog_and_max_users(tmp_path: Path) -> None:
    text = "user,item,what,ts,cost,cat\n" + "".join(f"{u},i{u % 3},pv,{1511544000 + u},{u}.5,c{u % 2}\n"
                                                   for u in range(20))
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
    text = HEADER + "1,a,pv,1511544000\n1,b,pv,1511544600\n1,c,pv,1511548000\n2,a,pv,1511544000\n"
    log = read_events(cfg(write(tmp_path, text), timestamp={"unit": "s"}))
    assert log.events["session_id"].tolist() == ["1-1", "1-1", "1-2", "2-1"]
    log = read_events(cfg(write(tmp_path, text), timestamp={"unit": "s"}, session_gap_minutes=120))
    assert log.report.sessions == 2
    users = pd.Series(["a", "a", "a-1"])
    ts = pd.Series(pd.to_datetime([0, 1, 0], unit="s", utc=True))
    assert derive_sessions(users, ts, 30).nunique() == 2  # 'a-1' (user a) vs 'a-1-1' (user a-1)


def test_session_column_kept(tmp_path: Path) -> None:
    text = "user,item,what,ts,visit\n1,a,pv,1511544001,s9\n1,b,pv,1511544002,\n"
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
        read_events(cfg(write(tmp_path, HEADER + "1,a,pv,1511544001\n1,,pv,1511544002\n")))


def test_malformed_lines_reported_by_file_line(tmp_path: Path) -> None:
    text = HEADER + "1,a,pv,1511544001\n1,b,pv\n1,c,pv,1511544003,extra\n2,d,pv,1511544004\n2,e,zz,1511544005\n"
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
    text = "user,item,what,ts,cost\n1,a,pv,1511544001,2.5\n1,b,pv,1511544002,cheap\n1,c,pv,1511544003,\n"
    with pytest.raises(DataError, match="non-numeric price: 'cheap'.*column 'cost', row 2"):
        read_events(cfg(write(tmp_path, text), columns=COLS | {"extra": {"price": "cost"}}))
    with pytest.raises(DataError, match="no events left.*after filtering"):
        read_events(cfg(write(tmp_path, HEADER + ROWS), start="2030-01-01"))


def test_row_numbers_after_skipped_lines() -> None:
    assert data_rows_after_skips(3, []).tolist() == [1, 2, 3]
    assert data_rows_after_skips(3, [1, 2]).tolist() == [3, 4, 5]


def test_jsonl_bad_rows_are_numbered_by_line(tmp_path: Path) -> None:
    text = '{"user": 1, "item": "a", "what": "pv", "ts": 1511544005}\n{"item": "b", "what": "pv", "ts": 1511544006}\n'
    with pytest.raises(DataError, match="empty user id.*row 2 \\(1 row\\) \\(1-based data rows = file lines\\)"):
        read_events(cfg(write(tmp_path, text, "log.jsonl")))


def test_text_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes((HEADER + "1,café,pv,1511544070\n").encode("latin-1"))
    with pytest.raises(DataError, match="invalid UTF8.*data.encoding \\('utf-8'; e.g. latin-1"):
        read_events(cfg(path))
    assert read_events(cfg(path, encoding="latin-1")).events["item_id"].tolist() == ["café"]


# ------------------------------------------------------------ skip mode keeps rows aligned (issue 12)
def _issue12_log(n: int = 200) -> tuple[str, list[list[str]]]:
    """``n`` rows of unix seconds; data row 3 has no user, row 9 the timestamp '2014-13-45'."""
    rows = [[str(i % 17), f"it{i}", ("pv", "buy", "cart")[i % 3], str(1400000000 + 60 * i)] for i in range(n)]
    rows[2][0], rows[8][3] = "", "2014-13-45"
    return HEADER + "".join(",".join(r) + "\n" for r in rows), rows


def test_skip_keeps_every_valid_row_aligned_after_dropped_rows(tmp_path: Path) -> None:
    """Issue 12 (0): with a dropped row above it, a numeric timestamp column came back on a
    0..n-1 index and was assigned by label: every later event got another row's time, and the
    last rows were reported "unparseable" although they were valid."""
    text, rows = _issue12_log()
    log = read_events(cfg(write(tmp_path, text), on_bad_rows="skip"))
    assert log.report.dropped == {"empty user id": 1, "unparseable timestamp": 1}
    assert log.report.dropped_rows == {"empty user id": [3], "unparseable timestamp": [9]}
    kept = [r for i, r in enumerate(rows) if i not in (2, 8)]
    want = pd.DataFrame({"user_id": [r[0] for r in kept], "item_id": [r[1] for r in kept],
                         "action": [MAP[r[2]] for r in kept],
                         "timestamp": pd.to_datetime([int(r[3]) for r in kept], unit="s", utc=True)})
    want = want.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    got = log.events[["user_id", "item_id", "action", "timestamp"]].astype({"action": str, "user_id": str,
                                                                             "item_id": str})
    pd.testing.assert_frame_equal(got, want.astype({"timestamp": "datetime64[ns, UTC]"}), check_dtype=False)


def test_parsers_keep_their_input_index() -> None:
    """The contract of `evtlm.ingest.values`: a column in, a column out on the same index (here with the
    gaps dropped rows leave), on the fast path and on the fallback for a bad value."""
    from evtlm.recipe import TimestampConfig
    from evtlm.ingest.values import parse_timestamps, to_number

    raw = pd.Series(["1511544070", "oops", "1511544071"], index=[4, 7, 9])
    assert to_number(raw).index.tolist() == [4, 7, 9]
    assert to_number(raw).tolist()[::2] == [1511544070.0, 1511544071.0]
    for unit in ("auto", "s"):
        ts, _ = parse_timestamps(raw, TimestampConfig(unit=unit))
        assert ts.index.tolist() == [4, 7, 9] and ts.isna().tolist() == [False, True, False]
        assert ts[9] == pd.Timestamp(1511544071, unit="s", tz="UTC")


# ------------------------------------------------------------------ implausible times (issue 12)
def test_seconds_in_a_millisecond_column_are_bad_rows_not_1970(tmp_path: Path) -> None:
    """Issue 12 (1): a millisecond column with a few rows in seconds read those as January 1970."""
    lines = [f"{i % 3},i{i},pv,{1511544070000 + 1000 * i}" for i in range(10)]
    lines[3] = "0,i3,pv,1511544073"
    lines[6] = "1,i6,pv,1511544076"
    path = write(tmp_path, HEADER + "\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        read_events(cfg(path))
    msg = str(err.value)
    assert "2 rows with timestamp that looks like seconds (column read as milliseconds): '1511544073'" in msg
    assert "column 'ts', rows 4, 7 (2 rows)" in msg and "the column mixes units" in msg
    log = read_events(cfg(path, on_bad_rows="skip"))
    assert log.report.dropped == {"timestamp that looks like seconds (column read as milliseconds)": 2}
    assert log.report.dropped_rows == {"timestamp that looks like seconds (column read as milliseconds)": [4, 7]}
    assert log.report.rows_kept == 8 and log.report.time_start.startswith("2017-11-24")


@pytest.mark.parametrize("value,reason", [("0", "timestamp before 1990-01-01"),
                                          ("-1", "timestamp before 1990-01-01"),
                                          ("4102444800", "timestamp in the future"),  # 2100 in seconds
                                          ("1989-12-31 23:59", "timestamp before 1990-01-01"),
                                          ("2100-01-01", "timestamp in the future")])
def test_times_before_1990_or_in_the_future_are_bad_rows(tmp_path: Path, value: str, reason: str) -> None:
    iso = not value.lstrip("-").isdigit()
    good = ["2017-11-24 10:00", "2017-11-24 11:00"] if iso else ["1511544070", "1511544071"]
    path = write(tmp_path, HEADER + f"1,a,pv,{good[0]}\n1,b,pv,{value}\n2,c,pv,{good[1]}\n")
    with pytest.raises(DataError, match=rf"1 row with {reason}: '{value}' \(expected a time from 1990-01-01 to "
                       rf".*column 'ts', row 2 \(1 row\)"):
        read_events(cfg(path))
    log = read_events(cfg(path, on_bad_rows="skip"))
    assert log.report.dropped == {reason: 1} and log.report.dropped_rows == {reason: [2]}
    assert log.events["item_id"].tolist() == ["a", "c"]


def test_date_strings_under_a_numeric_unit_suggest_iso(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "1,a,pv,2017-11-24 10:00\n1,b,pv,2017-11-24 11:00\n")
    with pytest.raises(DataError, match="unparseable timestamp.*look like date strings: set data.timestamp.unit: "
                       "iso \\(validate-data: --time-unit iso"):
        read_events(cfg(path, timestamp={"unit": "s"}))


# ----------------------------------------------------------- property: skip drops exactly the bad rows
MS0 = 1511544070000  # 2017-11-24 in milliseconds
# kind -> (the report's reason, how a valid row [user, item, action, ms, price] is broken);
# listed in the order `read_events` checks them (the first present one is the error raised)
BREAK = {
    "malformed": ("malformed line (wrong number of fields)", lambda r, v: r[:4] if v % 2 else r + ["x"]),
    "empty user": ("empty user id", lambda r, v: ["", " "][v % 2:v % 2 + 1] + r[1:]),
    "empty item": ("empty item id", lambda r, v: r[:1] + [""] + r[2:]),
    "unparseable": ("unparseable timestamp", lambda r, v: r[:3] + [["2014-13-45", "", "abc"][v % 3]] + r[4:]),
    "seconds": ("timestamp that looks like seconds (column read as milliseconds)",
                lambda r, v: r[:3] + [str(int(r[3]) // 1000)] + r[4:]),
    "before 1990": ("timestamp before 1990-01-01", lambda r, v: r[:3] + [["0", "-5", "631151999000"][v % 3]] + r[4:]),
    "future": ("timestamp in the future", lambda r, v: r[:3] + ["4102444800000"] + r[4:]),  # 2100, ms
    "unmapped action": ("unmapped action value", lambda r, v: r[:2] + ["clik"] + r[3:]),
    "non-numeric price": ("non-numeric price", lambda r, v: r[:4] + ["cheap"]),
}


def _valid_row(k: int, user: int, action: int, offset: int, priced: bool) -> list[str]:
    return [str(user), f"i{k}", ("pv", "buy", "cart")[action], str(MS0 + offset), f"{k}.5" if priced else ""]


try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    given = None

if given is not None:
    _row = st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(0, 10**9), st.booleans())

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(valid=st.lists(_row, min_size=6, max_size=40),
           bad=st.lists(st.tuples(st.sampled_from(sorted(BREAK)), st.integers(0, 10**6), st.integers(0, 5)),
                        max_size=12),
           mode=st.sampled_from(["skip", "error"]))
    def test_skip_keeps_exactly_the_rows_that_are_not_bad(tmp_path: Path, valid, bad, mode) -> None:
        """Bad rows of every kind inserted anywhere into a valid file: ``skip`` keeps exactly the
        other rows, each with its own values, and reports exactly the bad row numbers by reason;
        ``error`` raises on the first check's rows."""
        bad = bad[: (len(valid) - 1) // 2]  # the column stays mostly milliseconds (its unit by magnitude)
        rows = [(_valid_row(k, *v), None) for k, v in enumerate(valid)]
        for j, (kind, where, variant) in enumerate(bad):
            broken = BREAK[kind][1](_valid_row(len(valid) + j, variant % 6, variant % 3, variant, True), variant)
            rows.insert(where % (len(rows) + 1), (broken, kind))
        path = tmp_path / "log.csv"
        path.write_text("user,item,what,ts,cost\n" + "".join(",".join(r) + "\n" for r, _ in rows))
        c = cfg(path, columns=COLS | {"extra": {"price": "cost"}}, on_bad_rows=mode)
        expected_rows: dict[str, list[int]] = {}
        for number, (_, kind) in enumerate(rows, start=1):
            if kind is not None:
                expected_rows.setdefault(BREAK[kind][0], []).append(number)
        if mode == "error":
            if not expected_rows:
                read_events(c)
                return
            first = next(BREAK[k][0] for k in BREAK if BREAK[k][0] in expected_rows)
            numbers = expected_rows[first]
            with pytest.raises(DataError) as err:
                read_events(c)
            if first.startswith("malformed"):
                assert f"data rows {', '.join(map(str, numbers[:5]))}" in str(err.value)
            else:
                noun = "row" if len(numbers) == 1 else "rows"
                assert f"with {first}" in str(err.value)
                assert f"{noun} {', '.join(map(str, numbers[:5]))}{' …' if len(numbers) > 5 else ''} " \
                       f"({len(numbers)} {noun})" in str(err.value)
            return
        log = read_events(c)
        assert log.report.dropped == {reason: len(n) for reason, n in expected_rows.items()}
        assert log.report.dropped_rows == {reason: n[:5] for reason, n in expected_rows.items()}
        assert log.report.rows_read == len(rows) and log.report.rows_kept == len(valid)
        good = [r for r, kind in rows if kind is None]
        want = pd.DataFrame({"user_id": [r[0] for r in good], "item_id": [r[1] for r in good],
                             "action": [MAP[r[2]] for r in good],
                             "timestamp": pd.to_datetime([int(r[3]) for r in good], unit="ms", utc=True),
                             "price": [float(r[4]) if r[4] else np.nan for r in good]})
        want = want.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
        got = log.events[["user_id", "item_id", "action", "timestamp", "price"]]
        assert got.astype(str).values.tolist() == want.astype(str).values.tolist()


def test_one_session_rule_for_ingestion_the_history_index_and_purchase() -> None:
    """derive_sessions (ingestion) and HistoryIndex.session_start (baselines, features; the
    purchase task's visits call the same evtlm.ingest.events.session_starts): a visit starts at a user's
    first event, where the session id changes, and (no id) after a pause over the recipe's gap."""
    from evtlm.data.history import HistoryIndex
    from evtlm.recipe import SESSION_GAP_MINUTES

    minutes = [0, 10, 25, 70, 71, 0, 50, 52]
    ts = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(minutes, unit="min")
    events = pd.DataFrame({"user_id": list("aaaaabbb"), "timestamp": ts, "action": "view", "item_id": list("xyzxyzxy")})
    derived = derive_sessions(events["user_id"], events["timestamp"], SESSION_GAP_MINUTES)
    starts_from_ids = np.r_[True, derived.to_numpy()[1:] != derived.to_numpy()[:-1]]
    assert starts_from_ids.tolist() == [True, False, False, True, False, True, True, False]

    no_ids = HistoryIndex(events).session_start
    with_ids = HistoryIndex(events.assign(session_id=derived)).session_start
    assert no_ids.tolist() == with_ids.tolist() == starts_from_ids.tolist()
    # an explicit id wins over the clock: one id across a long pause is one visit
    one_visit = HistoryIndex(events.assign(session_id=events["user_id"])).session_start
    assert one_visit.tolist() == [True, False, False, False, False, True, False, False]

