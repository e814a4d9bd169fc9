"""No traceback from any CLI command on any input (issue 12, "No traceback from any CLI command").

Every `evtlm` subcommand is driven with bad input (a missing file, a malformed file, a bad
override, a bad flag value, a path that cannot be written) in-process, and must print exactly one
line on stderr, starting with ``error:``, and exit 2. The cases stop before any training: each
takes well under a second once the libraries are imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evtlm.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[1]
PURCHASE = str(REPO / "recipes" / "purchase.yaml")
COMMANDS = {"simulate", "verbalize", "validate-data", "prepare", "finetune", "evaluate", "predict", "validate", "recipe",
            "partition"}


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, str]:
    """Bad inputs of every kind, by name (paths as strings, for ``str.format`` in the cases)."""
    from evtlm.recipe import Recipe, dump_recipe

    d = tmp_path_factory.mktemp("bad-inputs")
    (d / "garbage.csv").write_bytes(bytes(range(256)) * 8)  # not text in any encoding the reader expects
    (d / "empty.csv").write_text("")
    (d / "wrong_columns.csv").write_text("a,b\n1,2\n3,4\n")
    (d / "bad_times.csv").write_text("user_id,item_id,action,timestamp\n1,2,view,yesterday\n1,3,view,soon\n")
    (d / "garbage.parquet").write_bytes(b"PAR1" + b"\x00" * 64)  # a Parquet magic, nothing behind it
    (d / "unclosed.yaml").write_text("task: [unclosed\n  name: purchase\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")  # YAML, but not a mapping
    (d / "typo.yaml").write_text("task:\n  nmae: purchase\n")
    (d / "a_file").write_text("a regular file where a directory is expected\n")
    (d / "tokenizer_dir").mkdir()  # a directory without tokenizer files
    (d / "good.csv").write_text("user_id,item_id,action,timestamp\n1,2,view,2024-01-01T10:00:00Z\n"
                                "1,3,cart,2024-01-01T10:05:00Z\n")
    from evtlm.recipe import SyntheticConfig
    from evtlm.ingest.simulate import simulate_shop, write_shop

    write_shop(simulate_shop(SyntheticConfig(users=5, items=30, days=7, seed=1)), d / "shop.csv")  # the shop's columns
    (d / "empty_dir").mkdir()  # a folder as data.path, with no data file in it
    (d / "mixed_dir").mkdir()  # a folder whose parts mix formats
    (d / "mixed_dir" / "a.csv").write_text("user_id,item_id,action,timestamp\n1,2,view,2024-01-01T10:00:00Z\n")
    (d / "mixed_dir" / "b.jsonl").write_text('{"user_id": 1, "item_id": 2, "action": "view", "timestamp": 1704103200}\n')
    unfinished = d / "unfinished_run"  # what a killed finetune leaves: a recipe, no run.json
    unfinished.mkdir()
    (unfinished / "recipe.resolved.yaml").write_text(dump_recipe(Recipe()))
    finished = d / "finished_run"  # enough of a run directory for the checks that precede the model
    finished.mkdir()
    (finished / "recipe.resolved.yaml").write_text(dump_recipe(Recipe()))
    (finished / "run.json").write_text(json.dumps({"model": {"format": "adapter"}}))
    (finished / "label_space.json").write_text(json.dumps([" no", " yes"]))
    return {"d": str(d), "missing": str(d / "missing.csv"), "garbage": str(d / "garbage.csv"),
            "empty": str(d / "empty.csv"), "wrong_columns": str(d / "wrong_columns.csv"),
            "bad_times": str(d / "bad_times.csv"), "garbage_parquet": str(d / "garbage.parquet"),
            "unclosed": str(d / "unclosed.yaml"), "list": str(d / "list.yaml"), "typo": str(d / "typo.yaml"),
            "under_file": str(d / "a_file" / "sub"), "tokenizer_dir": str(d / "tokenizer_dir"),
            "unfinished": str(unfinished), "finished": str(finished), "recipe": PURCHASE,
            "good": str(d / "good.csv"), "shop": str(d / "shop.csv"), "empty_dir": str(d / "empty_dir"),
            "mixed_dir": str(d / "mixed_dir")}


# (case id, argv); {name} is replaced by the fixture's path of that name
CASES = [
    ("no-command", []),
    ("unknown-command", ["fintune"]),
    ("unknown-flag", ["validate", "{recipe}", "--strict"]),
    # simulate
    ("simulate-bad-int", ["simulate", "--users", "many", "--out", "{d}/s.csv"]),
    ("simulate-no-out", ["simulate", "--users", "10"]),
    ("simulate-bad-date", ["simulate", "--users", "10", "--start", "2024-13-45", "--out", "{d}/s.csv"]),
    ("simulate-zero-users", ["simulate", "--users", "0", "--out", "{d}/s.csv"]),
    ("simulate-fewer-items-than-categories", ["simulate", "--users", "5", "--items", "10", "--out", "{d}/s.csv"]),
    ("simulate-out-under-a-file", ["simulate", "--users", "5", "--items", "30", "--days", "7", "--out", "{under_file}/s.csv"]),
    ("simulate-zero-part-users", ["simulate", "--users", "5", "--part-users", "0", "--out", "{d}/parts"]),
    # partition
    ("partition-missing-recipe", ["partition", "{missing}", "--out", "{d}/p"]),
    ("partition-zero-shards", ["partition", "{recipe}", "--out", "{d}/p0", "--shards", "0"]),
    ("partition-zero-chunk-rows", ["partition", "{recipe}", "--out", "{d}/p1", "--chunk-rows", "0"]),
    ("partition-out-exists", ["partition", "{recipe}", "--out", "{d}"]),
    ("partition-missing-data", ["partition", "{recipe}", "data.path={missing}", "--out", "{d}/p2"]),
    # verbalize
    ("verbalize-missing", ["verbalize", "{missing}"]),
    ("verbalize-garbage", ["verbalize", "{garbage}"]),
    ("verbalize-empty", ["verbalize", "{empty}"]),
    ("verbalize-wrong-columns", ["verbalize", "{wrong_columns}"]),
    ("verbalize-unknown-user", ["verbalize", "{good}", "--user", "nobody"]),
    ("verbalize-bad-timezone", ["verbalize", "{wrong_columns}", "--timezone", "Asia/Shangai"]),
    ("verbalize-bad-choice", ["verbalize", "{wrong_columns}", "--time", "sometimes"]),
    ("verbalize-bad-max-events", ["verbalize", "{wrong_columns}", "--max-events", "lots"]),
    ("verbalize-bad-preset", ["verbalize", "{wrong_columns}", "--preset", "taobo"]),
    ("verbalize-tokenizer-dir-without-files", ["verbalize", "{bad_times}", "--tokenizer", "{tokenizer_dir}"]),
    # validate-data
    ("validate-data-missing", ["validate-data", "{missing}"]),
    ("validate-data-garbage", ["validate-data", "{garbage}"]),
    ("validate-data-garbage-parquet", ["validate-data", "{garbage_parquet}"]),
    ("validate-data-empty", ["validate-data", "{empty}"]),
    ("validate-data-empty-folder", ["validate-data", "{empty_dir}"]),
    ("validate-data-folder-mixing-formats", ["validate-data", "{mixed_dir}"]),
    ("validate-data-glob-matching-nothing", ["validate-data", "{d}/*.nothing"]),
    ("validate-data-wrong-columns", ["validate-data", "{wrong_columns}"]),
    ("validate-data-bad-times", ["validate-data", "{bad_times}"]),
    ("validate-data-bad-unit", ["validate-data", "{bad_times}", "--time-unit", "fortnights"]),
    ("validate-data-bad-option", ["validate-data", "{bad_times}", "--option", "no_equals_sign"]),
    ("validate-data-bad-encoding", ["validate-data", "{bad_times}", "--encoding", "klingon-8"]),
    ("validate-data-bad-max-users", ["validate-data", "{bad_times}", "--max-users", "-3"]),
    ("validate-data-bad-start", ["validate-data", "{bad_times}", "--start", "not a time"]),
    ("validate-data-json-under-a-file", ["validate-data", "{good}", "--json", "{under_file}/r.json"]),
    # prepare
    ("prepare-missing-recipe", ["prepare", "{missing}"]),
    ("prepare-unclosed-yaml", ["prepare", "{unclosed}"]),
    ("prepare-yaml-not-a-mapping", ["prepare", "{list}"]),
    ("prepare-typo-key", ["prepare", "{typo}"]),
    ("prepare-bad-override-value", ["prepare", "{recipe}", "train.lr=fast"]),
    ("prepare-bad-override-key", ["prepare", "{recipe}", "train.lrr=0.1"]),
    ("prepare-override-without-equals", ["prepare", "{recipe}", "train.lr"]),
    ("prepare-missing-data", ["prepare", "{recipe}", "data.path={missing}", "--quiet"]),
    ("prepare-garbage-data", ["prepare", "{recipe}", "data.path={garbage}", "--quiet", "--no-cache"]),
    ("prepare-cache-under-a-file", ["prepare", "{recipe}", "data.synthetic.users=20", "--quiet", "--cache-dir", "{under_file}"]),
    # finetune
    ("finetune-missing-recipe", ["finetune", "{missing}"]),
    ("finetune-bad-override", ["finetune", "{recipe}", "train.max_steps=-1"]),
    ("finetune-missing-data", ["finetune", "{recipe}", "data.path={missing}", "output.dir={d}/runs", "--no-progress"]),
    ("finetune-output-under-a-file", ["finetune", "{recipe}", "output.dir={under_file}", "--no-progress"]),
    # evaluate
    ("evaluate-no-run-flag", ["evaluate"]),
    ("evaluate-missing-run", ["evaluate", "--run", "{missing}"]),
    ("evaluate-unfinished-run", ["evaluate", "--run", "{unfinished}"]),
    ("evaluate-override-of-training", ["evaluate", "--run", "{finished}", "train.lr=0.1"]),
    ("evaluate-bad-override-value", ["evaluate", "--run", "{finished}", "eval.max_examples=all"]),
    ("evaluate-bad-split", ["evaluate", "--run", "{finished}", "--split", "train"]),
    ("evaluate-bad-max-examples", ["evaluate", "--run", "{finished}", "--max-examples", "ten"]),
    # predict
    ("predict-missing-run", ["predict", "--run", "{missing}", "--history", "{bad_times}"]),
    ("predict-unfinished-run", ["predict", "--run", "{unfinished}", "--history", "{bad_times}"]),
    ("predict-missing-history", ["predict", "--run", "{finished}", "--history", "{missing}"]),
    ("predict-garbage-history", ["predict", "--run", "{finished}", "--history", "{garbage}", "--no-progress"]),
    ("predict-wrong-columns", ["predict", "--run", "{finished}", "--history", "{wrong_columns}", "--no-progress"]),
    ("predict-bad-top-k", ["predict", "--run", "{finished}", "--history", "{bad_times}", "--top-k", "0"]),
    ("predict-bad-batch-size", ["predict", "--run", "{finished}", "--history", "{bad_times}", "--batch-size", "big"]),
    ("predict-bad-as-of", ["predict", "--run", "{finished}", "--history", "{shop}", "--as-of", "next tuesday", "--no-progress"]),
    ("predict-out-under-a-file", ["predict", "--run", "{finished}", "--history", "{shop}", "--out", "{under_file}/p.jsonl",
                                  "--no-progress"]),
    ("predict-run-without-its-files", ["predict", "--run", "{finished}", "--history", "{shop}", "--no-progress"]),
    ("predict-bad-preset", ["predict", "--run", "{finished}", "--history", "{bad_times}", "--preset", "taobo"]),
    # validate, recipe show
    ("validate-missing", ["validate", "{missing}"]),
    ("validate-unclosed-yaml", ["validate", "{unclosed}"]),
    ("validate-not-a-mapping", ["validate", "{list}"]),
    ("recipe-show-missing", ["recipe", "show", "{missing}"]),
    ("recipe-show-bad-override", ["recipe", "show", "{recipe}", "task.name=next_purchase"]),
    ("recipe-no-action", ["recipe"]),
    # export
    ("export-no-flags", ["export"]),
    ("export-missing-run", ["export", "--run", "{missing}", "--out", "{d}/exported"]),
    ("export-unfinished-run", ["export", "--run", "{unfinished}", "--out", "{d}/exported"]),
    ("export-run-without-its-files", ["export", "--run", "{finished}", "--out", "{d}/exported"]),
    # base (named pretrained bases): an unknown name, no name
    ("base-install-unknown", ["base", "install", "nosuch"]),
    ("base-install-no-name", ["base", "install"]),
]


def test_the_cases_cover_every_subcommand():
    """A new subcommand must get its bad-input cases here (this fails until it has some)."""
    parser = build_parser()
    registered = set(next(a for a in parser._actions if a.dest == "command").choices)
    assert COMMANDS <= registered
    covered = {argv[0] for _, argv in CASES if argv}
    assert registered <= covered, f"add bad-input CASES for {sorted(registered - covered)}"


@pytest.mark.parametrize("argv", [argv for _, argv in CASES], ids=[name for name, _ in CASES])
def test_bad_input_prints_one_error_line_and_exits_2(argv, bad, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("EVTLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    code = main([a.format(**bad) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert code == 2, f"exit {code}: {err}"


def test_a_bug_is_one_line_naming_its_saved_traceback_and_exits_1(capsys, monkeypatch, tmp_path):
    """Anything that is not a user error is a bug: one line (exit 1) pointing at the traceback."""
    import evtlm.cli.recipe as recipe_cli

    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(recipe_cli, "_validate", broken)  # main() builds its parser afresh: it picks this up
    monkeypatch.delenv("EVTLM_DEBUG", raising=False)
    assert main(["validate", PURCHASE]) == 1
    err = capsys.readouterr().err
    (line,) = err.splitlines()
    assert line.startswith("error: internal error in evtlm validate: ZeroDivisionError: division by zero")
    saved = line.split("saved in ", 1)[1].split(";", 1)[0]
    assert "ZeroDivisionError" in Path(saved).read_text() and "Traceback" not in err
    Path(saved).unlink()
    monkeypatch.setenv("EVTLM_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["validate", PURCHASE])


def test_the_console_script_prints_one_line_without_warnings(bad):
    """The real process: what a user sees, library warnings and all (pytest captures those in-process)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    for argv in (["predict", "--run", bad["unfinished"], "--history", bad["bad_times"]],
                 ["validate-data", bad["garbage"]]):
        proc = subprocess.run([sys.executable, "-m", "evtlm.cli.main", *argv], capture_output=True, text=True, env=env,
                              timeout=300)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


@pytest.mark.parametrize("argv", [
    ["finetune", PURCHASE, "--no-progress", "train.epochs=1", "task.max_tokens=64"],
    ["finetune", PURCHASE, "train.epochs=1", "--no-progress", "task.max_tokens=64"],
    ["finetune", "--no-progress", PURCHASE, "train.epochs=1", "task.max_tokens=64"],
])
def test_overrides_may_follow_a_flag(argv):
    """argparse alone would stop the overrides at ``--no-progress``; the typed order is kept."""
    from evtlm.cli.main import _parse

    args = _parse(build_parser(), argv)
    assert args.overrides == ["train.epochs=1", "task.max_tokens=64"]
    assert args.no_progress is True


def test_a_stray_word_after_a_flag_is_still_a_usage_error(capsys):
    assert main(["finetune", PURCHASE, "--no-progress", "not-an-override"]) == 2
    assert "unrecognized arguments: not-an-override" in capsys.readouterr().err
    assert main(["validate", PURCHASE, "--bogus-flag"]) == 2
