"""`evtlm validate-data`: the printed report, the JSON report, mapping flags, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from evtlm.cli.main import main

LOG = "uid;sku;type;when\n1;a;pv;1511544070\n1;b;buy;1511544130\n2;a;pv;1511600000\n2;c;zz;1511600060\n2;c;pv\n"


def test_taobao_acceptance(shared_data: Path, capsys) -> None:
    code = main(["validate-data", str(shared_data / "taobao/UserBehavior_head84k.csv"), "--preset", "taobao"])
    out = capsys.readouterr().out
    assert code == 0
    assert "rows read            84,475" in out
    assert "users                815" in out
    assert "raw action values    4 distinct: pv 75,872 · cart 4,497 · fav 2,356 · buy 1,750" in out
    assert "before data.start (2017-11-25 00:00:00 Asia/Shanghai): 35 (first data rows: 4171, 7991" in out
    assert "events per action    view 75,837 · cart 4,497 · favorite 2,356 · purchase 1,750" in out


def test_mapping_flags_skip_and_json(tmp_path: Path, capsys) -> None:
    path = tmp_path / "log.csv"
    path.write_text(LOG)
    out_json = tmp_path / "report.json"
    code = main(["validate-data", str(path), "--user-col", "uid", "--item-col", "sku", "--action-col", "type",
                 "--time-col", "when", "--delimiter", "semicolon", "--map", "pv=view", "--map", "buy=purchase",
                 "--on-bad-rows", "skip", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0
    assert "rows read            5" in out and "rows kept            3" in out
    assert "malformed line (wrong number of fields): 1 (first data rows: 5)" in out
    assert "unmapped action value: 1 (first data rows: 4)" in out
    assert "events per action    view 2 · purchase 1" in out
    report = json.loads(out_json.read_text())
    assert report["dropped"] == {"malformed line (wrong number of fields)": 1, "unmapped action value": 1}
    assert report["users"] == 2 and report["raw_actions"] == {"pv": 2, "buy": 1, "zz": 1}


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "log.csv"
    path.write_text(LOG)
    args = ["validate-data", str(path), "--user-col", "uid", "--item-col", "sku", "--action-col", "type",
            "--time-col", "when", "--map", "pv=view", "--map", "buy=purchase"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 1 malformed line: expected 4 fields separated by ';', line 6 has 3")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert main(args[:-4] + ["--map", "pv=looked"]) == 2
    assert "invalid data settings: actions.pv: Input should be 'view'" in capsys.readouterr().err
    assert main(["validate-data", str(path), "--preset", "taobao", "--option", "oops"]) == 2
    assert "--option 'oops' is not KEY=VALUE" in capsys.readouterr().err
    assert main(["validate-data", str(tmp_path / "nope.csv")]) == 2
    assert "did you mean 'log.csv'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- issue 12
def test_skip_report_names_only_the_bad_rows(tmp_path: Path, capsys) -> None:
    """Issue 12 (0): "unparseable timestamp: 3 (first data rows: 9, 198, 199)" for one bad
    timestamp: the rows after a dropped one were misaligned."""
    rows = [f"{'' if i == 2 else i % 17},it{i},view,{'2014-13-45' if i == 8 else 1400000000 + 60 * i}"
            for i in range(200)]
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,action,timestamp\n" + "\n".join(rows) + "\n")
    assert main(["validate-data", str(path), "--on-bad-rows", "skip"]) == 0
    out = capsys.readouterr().out
    assert "rows kept            198" in out
    assert "unparseable timestamp: 1 (first data rows: 9)" in out and "empty user id: 1 (first data rows: 3)" in out
    assert "time span            2014-05-13T16:53:20+00:00 .. 2014-05-13T20:12:20+00:00" in out


def test_wrong_time_unit_says_what_the_values_look_like(tmp_path: Path, capsys) -> None:
    """Issue 12 (1, 2): milliseconds read as seconds, and seconds mixed into milliseconds."""
    path = tmp_path / "log.csv"
    rows = [f"{i % 3},i{i},view,{1511544070000 + 1000 * i}" for i in range(20)]
    path.write_text("user_id,item_id,action,timestamp\n" + "\n".join(rows) + "\n")
    assert main(["validate-data", str(path), "--time-unit", "s"]) == 2
    err = capsys.readouterr().err
    assert "20 rows with timestamp that looks like milliseconds (column read as seconds)" in err
    assert "set data.timestamp.unit: ms (validate-data: --time-unit ms" in err and err.count("\n") == 1
    rows[4] = "1,i4,view,1511544074"
    path.write_text("user_id,item_id,action,timestamp\n" + "\n".join(rows) + "\n")
    assert main(["validate-data", str(path)]) == 2
    assert "1 row with timestamp that looks like seconds (column read as milliseconds)" in capsys.readouterr().err
    assert main(["validate-data", str(path), "--on-bad-rows", "skip"]) == 0
    out = capsys.readouterr().out
    assert "timestamp that looks like seconds (column read as milliseconds): 1 (first data rows: 5)" in out
    assert "1970" not in out and "time span            2017-11-24" in out


def test_timezone_typo_is_one_line_with_a_suggestion(tmp_path: Path, capsys) -> None:
    """Issue 12 (3): `--timezone Asia/Shangai` was a 56-line ZoneInfoNotFoundError traceback, and a
    recipe with it passed `evtlm validate`."""
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,action,timestamp\n1,a,view,2017-11-25 08:00\n")  # naive: read in the zone
    assert main(["validate-data", str(path), "--timezone", "Asia/Shanghai"]) == 0
    assert "time span            2017-11-25T00:00:00+00:00" in capsys.readouterr().out
    assert main(["validate-data", str(path), "--timezone", "Asia/Shangai"]) == 2
    err = capsys.readouterr().err
    assert "unknown time zone 'Asia/Shangai' in data.timestamp.timezone, did you mean 'Asia/Shanghai'?" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  preset: taobao\n  path: x.csv\n  timestamp: {timezone: Asia/Shangai}\n")
    assert main(["validate", str(recipe)]) == 2
    assert "did you mean 'Asia/Shanghai'?" in capsys.readouterr().err
    recipe.write_text("data:\n  timestamp: {timezone: utc}\n")  # pandas' spellings stay valid
    assert main(["validate", str(recipe)]) == 0


def test_closed_output_pipe_exits_quietly(tmp_path: Path) -> None:
    """Issue 12 (3): `evtlm validate-data ... | head -1` printed a BrokenPipeError traceback."""
    import subprocess
    import sys

    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,action,timestamp\n1,a,view,1511544070\n")
    proc = subprocess.Popen([sys.executable, "-m", "evtlm", "validate-data", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the report is written (the child imports first)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err and err == ""


def test_item_col_empty_means_a_log_without_items(tmp_path: Path, capsys) -> None:
    """Issue 13: `--item-col ''` was ignored, and the error never mentioned data.columns.item: null."""
    path = tmp_path / "log.csv"
    path.write_text("uid,ts,what\n1,1511544070,pv\n2,1511544071,pv\n")
    base = ["validate-data", str(path), "--user-col", "uid", "--time-col", "ts", "--action-col", "what",
            "--map", "pv=view"]
    assert main(base) == 2
    assert "a log without items: data.columns.item: null (validate-data: --item-col '')" in capsys.readouterr().err
    assert main(base + ["--item-col", ""]) == 0
    assert "rows kept            2" in capsys.readouterr().out
    assert main(base + ["--user-col", ""]) == 2
    assert "--user-col cannot be empty" in capsys.readouterr().err


def test_a_known_layout_without_its_preset_suggests_it(tmp_path: Path, capsys) -> None:
    """Issue 12 (6): a Taobao file read without --preset was told about data.has_header and
    data.column_names (recipe keys, not flags); its layout names the preset."""
    path = tmp_path / "UserBehavior.csv"
    path.write_text("1,2268318,2520377,pv,1511544070\n1,2333346,2520771,buy,1511561733\n")
    assert main(["validate-data", str(path)]) == 2
    err = capsys.readouterr().err
    assert "the columns match the preset 'taobao' (Alibaba Tianchi UserBehavior): set data.preset: taobao " \
           "(--preset taobao)" in err
    assert "validate-data: --no-header --column-names" in err
    assert main(["validate-data", str(path), "--preset", "taobao"]) == 0
