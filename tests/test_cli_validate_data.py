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
