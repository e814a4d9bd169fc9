"""The README cannot drift: every command it shows is run here or by a named test or CI, the
newcomer path runs as written, the troubleshooting messages are the real ones, and the recipe
reference matches the schema.

How a command counts as covered (`COVERAGE`, first match wins; a command matching no row fails
`test_every_readme_command_is_covered`, and so does a row naming a test that does not exist):

- ``ci``: `.ci/run` runs it literally (the two set-up commands);
- ``quickstart`` / ``console``: this file runs the README's quickstart block as it is (tiny model
  settings through the ``ARGS`` environment variable the Makefile reads) and every ``$ command``
  of its console blocks, comparing the printed error line;
- ``dry-run``: a ``make`` line whose full run needs GPUs or hours; `make -n` must expand it to an
  ``accelerate launch`` of a recipe that loads with its overrides;
- ``here``: run by `test_small_commands_run` below;
- ``tests/<file>.py::<test>``: that test runs the same code path.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent
COMMAND_WORDS = ("make", "evtlm", "python", "accelerate", "source", "pip", "head", ".venv/bin/")

# A tiny model for the quickstart run (the Makefile's `ARGS ?=` takes it from the environment).
TINY_ARGS = (
    "data.synthetic.users=80 data.synthetic.items=40 data.synthetic.days=28 split.valid_days=5 split.test_days=5 "
    "task.max_tokens=96 train.max_steps=3 train.batch_size=8 model.scratch.n_layer=1 model.scratch.n_embd=32 "
    "model.scratch.n_head=2 model.scratch.vocab_size=700 model.scratch.pretrain_max_steps=2 "
    "model.scratch.pretrain_block=64 eval.max_examples=60 eval.fit_max_examples=30 eval.gbt.max_iter=20"
)

COVERAGE: list[tuple[str, str]] = [
    (r"make setup$", "ci"),
    (r"make test$", "ci"),
    (r"make setup TORCH=", "dry-run"),
    (r"make setup PRETRAINED=1$", "dry-run"),
    (r"make base-smollm2$", "dry-run"),
    (r"make test-all$", "dry-run"),
    (r"make test-floors$", "dry-run"),
    (r"make bench$", "dry-run"),
    (r"make bench-(prepare|train|predict|quality|stream|scale|ranks|gpu)$", "dry-run"),
    (r"make bench-gpu BENCH_ARGS=--dry-run$", "tests/test_bench.py::test_the_gpu_check_runs_dry_on_cpu"),
    (r"make finetune RECIPE=purchase$", "quickstart"),
    (r"make finetune\b", "dry-run"),
    (r"source \.venv/bin/activate$", "quickstart"),
    (r"\.venv/bin/evtlm$", "quickstart"),
    (r"evtlm evaluate --run runs/purchase$", "quickstart"),
    (r"evtlm simulate --users 2000 --seed 7 --out shop\.csv$", "quickstart"),
    (r"evtlm predict --run runs/purchase --history shop\.csv --out preds\.jsonl$", "quickstart"),
    (r"head -n 3 preds\.jsonl$", "quickstart"),
    (r"evtlm validate bad\.yaml$", "console"),
    (r"evtlm validate-data (evnts|events)\.csv", "console"),
    (r"evtlm finetune recipes/(purchase\.yaml|purchase_smollm2\.yaml|next_action\.yaml model\.when_unavailable=error)$",
     "console"),
    (r"evtlm predict --run runs/purchase --history my_users\.csv$", "console"),
    (r"evtlm validate-data my_log\.csv ", "here"),
    (r"evtlm validate recipes/\*\.yaml$", "here"),
    (r"evtlm recipe show recipes/purchase\.yaml train\.lr=3e-4$", "here"),
    (r"python -m evtlm\.reference --write README\.md$", "here"),
    (r"evtlm simulate .*--part-users", "tests/test_sources.py::"
     "test_a_simulated_shop_in_parquet_parts_goes_through_validate_prepare_and_finetune"),
    (r"evtlm simulate\b", "tests/test_cli_simulate_verbalize.py::test_simulate_twice_writes_identical_bytes"),
    (r"evtlm partition .*--engine dask", "tests/test_partition_dask.py::"
     "test_the_cli_on_a_local_cluster_of_processes_matches_the_local_engine"),
    (r"evtlm partition\b", "tests/test_partition.py::test_partition_cli_prints_rates_and_writes_the_folder"),
    (r"pip install 'evtlm\[deepspeed\]'$",  # the DeepSpeed runs skip without it, naming this command
     "tests/test_distributed.py::test_two_processes_reach_one_process_losses_at_the_same_global_batch"),
    (r"pip install 'evtlm\[dask\]'$",
     "tests/test_partition.py::test_the_dask_engine_without_its_extra_is_a_one_line_error_naming_the_fix"),
    (r"evtlm validate-data ", "tests/test_cli_validate_data.py::test_taobao_acceptance"),
    (r"evtlm verbalize\b", "tests/test_cli_simulate_verbalize.py::test_verbalize_taobao_user_1"),
    (r"evtlm validate RECIPE", "tests/test_recipe.py::test_cli_validate_exits_2_with_one_line_error"),
    (r"evtlm recipe show RECIPE", "here"),
    (r"evtlm prepare\b", "tests/test_data.py::test_cli_prepare_prints_report_and_uses_cache"),
    (r"evtlm finetune recipes/taobao_purchase\.yaml$",
     "tests/test_notebooks.py::test_real_logs_notebook_says_which_data_and_reads_mistakes"),
    (r"evtlm finetune\b", "tests/test_train.py::test_finetune_cli_writes_a_complete_run_dir"),
    (r"evtlm evaluate\b", "tests/test_evaluate.py::test_evaluate_cli_prints_every_method_with_the_same_n"),
    (r"evtlm predict\b", "tests/test_predict.py::test_predict_cli_writes_valid_jsonl_for_every_user"),
    (r"evtlm export\b", "tests/test_export.py::test_export_cli_writes_once_and_refuses_to_overwrite_silently"),
    (r"evtlm base\b", "tests/test_bases.py::test_base_cli_lists_and_refuses_unknown_names_in_one_line"),
    (r"accelerate launch -m evtlm\.cli\.main finetune", "dry-run"),
    (r"\.venv/bin/accelerate launch --config_file recipes/accelerate/ddp\.yaml --num_machines 2",
     "tests/test_train.py::test_two_cpu_processes_get_disjoint_data_and_write_once"),
]

# Commands `test_small_commands_run` runs (in a sandbox beside the repository's recipes).
HERE = [
    "evtlm validate-data my_log.csv",
    "evtlm validate recipes/*.yaml",
    "evtlm recipe show recipes/purchase.yaml train.lr=3e-4",
]


# ------------------------------------------------------------------------------ README parsing
def _blocks(text: str) -> list[tuple[str, str, str]]:
    """Fenced code blocks as (language, body, the line just before the fence)."""
    out = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        out.append((m.group(1), m.group(2), before))
    return out


def _shell_lines(body: str) -> list[str]:
    """Commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    lines = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            lines.append(" ".join(line.split()))
    return lines


def readme_commands(text: str) -> list[str]:
    """Every shell command the README shows: bash blocks, ``$`` lines of console blocks, and inline
    code spans that start with a command word."""
    commands = []
    for lang, body, _ in _blocks(text):
        if lang in ("bash", "sh", "shell"):
            commands += _shell_lines(body)
        commands += [" ".join(line[2:].split()) for line in body.splitlines() if line.startswith("$ ")]
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        if span.startswith(COMMAND_WORDS) and (" " in span or span.startswith(".venv/bin/")):
            commands.append(" ".join(span.split()))
    return list(dict.fromkeys(commands))


def marked_block(text: str, name: str) -> tuple[str, str]:
    """(language, body) of the code block right after ``<!-- readme-test: NAME ... -->``."""
    found = [(lang, body) for lang, body, before in _blocks(text) if before.startswith(f"<!-- readme-test: {name}")]
    assert len(found) == 1, f"README: one code block marked `<!-- readme-test: {name} -->` expected"
    return found[0]


def coverage(command: str) -> str | None:
    return next((where for pattern, where in COVERAGE if re.match(pattern, command)), None)


# --------------------------------------------------------------------------------- the sandbox
@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A working directory that looks like a clone (Makefile, recipes, .venv) and writes nothing
    into the repository; fixture files for the troubleshooting examples."""
    root = tmp_path_factory.mktemp("readme")
    for name in ("Makefile", "recipes"):
        (root / name).symlink_to(REPO / name)
    # `.venv` is the environment running the tests: under `make test-floors` the quickstart's
    # `make finetune` and `source .venv/bin/activate` then use the floor versions too
    (root / ".venv").symlink_to(Path(sys.prefix))
    (root / "bad.yaml").write_text("train:\n  epochs: many\n  lr_rate: 3.0e-4\n")
    (root / "events.csv").write_text("user_id,item_id,action,timestamp\n1,5,view,2024-01-01T00:00:00Z\n"
                                     "1,6,clik,2024-01-01T00:01:00Z\n2,5,purchase,2024-01-01T00:03:00Z\n")
    (root / "my_log.csv").write_text("uid,sku,type,ts\n1,5,pv,2024-01-01T00:00:00Z\n1,6,clik,2024-01-01T00:01:00Z\n"
                                     "2,5,buy,2024-01-01T00:03:00Z\n")
    return root


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", EVTLM_CACHE=str(root / "cache"),
               OMP_NUM_THREADS="1", TQDM_DISABLE="1", MPLBACKEND="Agg", HF_HUB_OFFLINE="1")
    # under `make test` (as CI runs it) these say "you are a sub-make": a nested make would then
    # print "make[1]: Entering directory ..." around its output and inherit make's flags
    for var in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR"):
        env.pop(var, None)
    return env


def _bash(script: str, cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quickstart(sandbox) -> subprocess.CompletedProcess:
    """The README's "From clone to predictions" block, run as written (tiny model via ARGS)."""
    lang, body = marked_block(README.read_text(), "quickstart")
    assert lang == "bash"
    env = _env(sandbox) | {"ARGS": TINY_ARGS}
    done = _bash("set -euo pipefail\n" + body, sandbox, env)
    assert done.returncode == 0, f"the README quickstart failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


# -------------------------------------------------------------------------------------- tests
def test_every_readme_command_is_covered():
    commands = readme_commands(README.read_text())
    assert len(commands) > 20  # the parser found the README's commands
    missing = [c for c in commands if coverage(c) is None]
    assert not missing, "README commands run by no test or CI (run them here or add them to COVERAGE):\n" + \
        "\n".join(missing)
    ci = (REPO / ".ci" / "run").read_text()
    text = README.read_text()
    quick = _shell_lines(marked_block(text, "quickstart")[1])
    console = [" ".join(line[2:].split()) for lang, body, _ in _blocks(text) if lang == "console"
               for line in body.splitlines() if line.startswith("$ ")]
    for command in commands:
        where = coverage(command)
        if where == "ci":
            assert re.search(rf"^{re.escape(command)}$", ci, re.M), f"{command!r}: not in .ci/run"
        elif where == "quickstart":
            assert command in quick or command.startswith((".venv/bin/evtlm", "make finetune RECIPE=purchase")), command
        elif where == "console":
            assert command in console, f"{command!r}: not in a console block"
        elif where == "dry-run":
            assert command.startswith(("make ", "accelerate launch")), command
        elif where == "here":
            assert any(command.startswith(h) for h in HERE) or "evtlm.reference" in command or "RECIPE" in command
        else:
            path, _, name = where.partition("::")
            source = (REPO / path).read_text()
            assert re.search(rf"^def {name}\(", source, re.M), f"{command!r} maps to {where}, which does not exist"


def test_parser_reads_blocks_console_lines_and_inline_spans():
    text = ("Run `evtlm simulate --out a.csv` or `--flag`.\n```bash\nmake x \\\n  Y=1   # note\n# only a comment\n```\n"
            "```console\n$ evtlm validate b.yaml\nerror: ...\n```\n")
    assert readme_commands(text) == ["make x Y=1", "evtlm validate b.yaml", "evtlm simulate --out a.csv"]
    assert coverage("make setup") == "ci" and coverage("rm -rf /") is None


def test_make_commands_expand_to_a_loadable_recipe(sandbox):
    """`make -n` of every README make line: the target exists, finetune lines become `accelerate
    launch ... -m evtlm.cli.main finetune RECIPE [overrides]` and that recipe loads with them."""
    from evtlm.recipe import load_recipe

    makes = [c for c in readme_commands(README.read_text()) if c.startswith("make ")]
    assert any("NUM_GPUS" in c for c in makes) and any("RESUME=1" in c for c in makes)
    env = _env(sandbox) | {"ARGS": ""}
    for command in makes:
        done = _bash(command.replace("make ", "make -n ", 1), sandbox, env, timeout=60)
        assert done.returncode == 0, f"{command}: {done.stderr}"
        if not command.startswith("make finetune"):
            continue
        launch = " ".join(done.stdout.replace("\\\n", " ").split())
        argv = shlex.split(launch)
        assert argv[0].endswith("accelerate") and argv[1] == "launch", launch
        at = argv.index("finetune")
        assert argv[at - 2:at] == ["-m", "evtlm.cli.main"], launch
        if "NUM_GPUS=" in command:
            assert argv[argv.index("--num_processes") + 1] == re.search(r"NUM_GPUS=(\d+)", command).group(1)
        if "ACCELERATE_CONFIG=" in command:
            assert (sandbox / argv[argv.index("--config_file") + 1]).is_file(), launch
        assert ("--resume" in argv) == ("RESUME=1" in command)
        recipe, overrides = argv[at + 1], [a for a in argv[at + 2:] if a != "--resume"]
        load_recipe(sandbox / recipe, overrides)  # a README override with a typo fails here


def test_multi_node_command_names_real_files():
    from evtlm.recipe import load_recipe

    multi = [c for c in readme_commands(README.read_text()) if "accelerate launch --config_file" in c]
    assert multi
    for command in multi:
        argv = shlex.split(command)
        assert (REPO / argv[argv.index("--config_file") + 1]).is_file()
        assert int(argv[argv.index("--num_processes") + 1]) >= int(argv[argv.index("--num_machines") + 1])
        load_recipe(REPO / argv[argv.index("finetune") + 1])
    for config in (REPO / "recipes" / "accelerate").glob("*.yaml"):
        assert f"`{config.name}`" in README.read_text(), f"{config.name} is not documented in the README"


def test_quickstart_gives_a_model_its_table_and_predictions(sandbox, quickstart):
    """The newcomer path: a trained purchase run, its evaluation table, a predictions file."""
    run = sandbox / "runs" / "purchase"
    assert ((run / "adapter").is_dir() or (run / "model").is_dir()) and (run / "tokenizer").is_dir()
    assert (run / "metrics.json").is_file() and (run / "report.md").is_file()
    assert "N = " in quickstart.stdout and "gbt" in quickstart.stdout  # the evaluation table was printed
    records = [json.loads(line) for line in (sandbox / "preds.jsonl").read_text().splitlines()]
    assert len(records) == 2000 and all(0.0 <= r["p_purchase"] <= 1.0 for r in records)
    assert quickstart.stdout.count('"p_purchase"') == 3  # head -n 3


def test_console_examples_print_exactly_what_the_readme_shows(sandbox, quickstart):
    """Every ``$ command`` of a console block prints the error line shown under it (… = anything)."""
    pairs = []
    for lang, body, _ in _blocks(README.read_text()):
        if lang != "console":
            continue
        lines = body.splitlines()
        pairs += [(line[2:], lines[i + 1]) for i, line in enumerate(lines) if line.startswith("$ ")]
    assert len(pairs) >= 6
    for command, shown in pairs:
        done = _bash(command, sandbox, _env(sandbox), timeout=120)
        assert done.returncode == 2, f"{command}: exit {done.returncode}\n{done.stderr[-2000:]}"
        # a progress bar may precede the error on the same line (bars do not end in a newline)
        printed = re.findall(r"error: [^\r\n]*", done.stderr)
        pattern = ".*".join(re.escape(part) for part in shown.split("…"))
        assert printed and re.fullmatch(pattern, printed[-1]), f"{command}\nREADME: {shown}\nprinted: {printed}\n{done.stderr[-1500:]!r}"


def test_small_commands_run(sandbox, tmp_path):
    text = README.read_text()
    for start in HERE:
        command = next(c for c in readme_commands(text) if c.startswith(start))
        done = _bash(command, sandbox, _env(sandbox), timeout=120)
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
        if start.startswith("evtlm validate-data"):
            assert "unmapped action value: 1" in done.stdout and "events per action    view 1 · purchase 1" in done.stdout
        elif start.startswith("evtlm validate "):
            assert done.stdout.count("ok: ") == len(list((REPO / "recipes").glob("*.yaml")))
        else:
            assert "lr: 0.0003" in done.stdout
    # the regeneration command, on a copy (never rewriting the real README from a test)
    copy = tmp_path / "README.md"
    copy.write_text(text.replace("| `train.lr` |", "| `train.learning_rate` |"))
    check = [sys.executable, "-m", "evtlm.reference", "--check", "README.md"]
    assert subprocess.run(check, cwd=tmp_path, capture_output=True, text=True).returncode == 1
    done = subprocess.run([sys.executable, "-m", "evtlm.reference", "--write", "README.md"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "rewritten" in done.stdout
    assert copy.read_text() == text
    assert subprocess.run(check, cwd=tmp_path, capture_output=True, text=True).returncode == 0


# -------------------------------------------------------------------------- recipe reference
def test_recipe_reference_in_the_readme_matches_the_schema():
    from evtlm.reference import REGENERATE, stale_lines

    diff = stale_lines(README.read_text(), where=str(README))
    assert not diff, f"the README's recipe reference is stale; run `{REGENERATE}`:\n" + "\n".join(diff[:20])


def test_a_field_added_to_the_schema_makes_the_reference_stale():
    """Add a field to (a subclass of) the train section: the README check must notice and name it."""
    from pydantic import Field, create_model

    from evtlm.recipe import Recipe, TrainConfig
    from evtlm.reference import stale_lines

    knob = (int, Field(3, ge=0, description="a setting added without regenerating"))
    train = create_model("TrainConfig", __base__=TrainConfig, __doc__=TrainConfig.__doc__, new_knob=knob)
    recipe = create_model("Recipe", __base__=Recipe, __doc__=Recipe.__doc__, train=(train, Field(default_factory=train)))
    text = README.read_text()
    assert stale_lines(text, recipe) == ["+ | `train.new_knob` | int ≥ 0 | `3` | a setting added without regenerating |"]
    assert stale_lines(text) == []  # the real schema still matches


def test_every_recipe_key_is_described_in_its_field_and_every_section_in_its_docstring():
    """The reference reads the schema alone: each key's meaning is its Field(description=...), each
    section heading its own docstring (never the base class's)."""
    from evtlm.recipe import ACTIONS, Recipe, Section
    from evtlm.reference import field_rows, walk_sections

    undescribed = [r.key for prefix, model in walk_sections(Recipe, "") for r in field_rows(model, prefix, ACTIONS)
                   if not r.meaning]
    assert not undescribed, f"give these fields a Field(description=...): {undescribed}"
    for prefix, model in walk_sections(Recipe, ""):
        doc = model.model_json_schema().get("description")
        assert doc and doc != Section.__doc__, f"section {prefix or 'top level'} ({model.__name__}) needs its own docstring"


def test_presets_in_the_readme_are_the_registered_ones():
    from evtlm.ingest.presets import PRESETS

    section = README.read_text().split("## Real data: presets", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, re.M)
    assert documented == list(PRESETS), "the README's preset table differs from evtlm.ingest.presets.PRESETS"


def test_readme_results_table_is_generated_from_the_benchmark_output():
    """The README's real-log table is `bench.readme_results.render(bench/results/quality.json)`:
    regenerate it with `python -m bench.readme_results --write` (bench.quality does after a run)."""
    import json
    import sys

    sys.path.insert(0, str(REPO))
    from bench.readme_results import block, render

    quality = json.loads((REPO / "bench" / "results" / "quality.json").read_text())
    assert block((REPO / "README.md").read_text()) == render(quality)
