"""Recipe schema: strict, typed, every error at once with its dotted path; shipped recipes load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evtlm.cli.main import main
from evtlm.errors import RecipeError
from evtlm.recipe import Recipe, dump_recipe, load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_defaults_are_defined_once_in_the_schema() -> None:
    recipe = load_recipe(None)
    assert recipe == Recipe()
    assert recipe.lora.target_modules is None  # the architecture's own (evtlm.train.modeling.lora_targets)


def test_typo_and_wrong_type_reported_together_with_dotted_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  lr_rate: 0.1\n  epochs: many\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    msg = str(info.value)
    assert "2 problems" in msg
    assert "train.lr_rate: unknown key (did you mean 'lr'?)" in msg
    assert "train.epochs: expected a number, got 'many'" in msg
    assert str(path) in msg


def test_cli_validate_exits_2_with_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "train:\n  lr_rate: 0.1\n  epochs: many\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 problems in the recipe")
    assert "Traceback" not in err


def test_literal_error_lists_allowed_values() -> None:
    with pytest.raises(RecipeError, match=r"split.method: got 'leave-one-out', expected one of .*'leave_one_out'"):
        load_recipe(None, ["split.method=leave-one-out"])


def test_task_name_is_checked_against_the_task_registry() -> None:
    """task.name is any registered task (evtlm.tasks.TASKS), not a list the schema repeats."""
    with pytest.raises(RecipeError, match=r"task.name: got 'nextitem', expected a registered task: did you mean 'next_item'"):
        load_recipe(None, ["task.name=nextitem"])
    from evtlm.recipe import TaskConfig
    from evtlm.tasks import TASKS

    assert TaskConfig.model_json_schema()["properties"]["name"]["enum"] == list(TASKS)


def test_unknown_section_suggests_the_closest() -> None:
    with pytest.raises(RecipeError, match=r"trian: unknown key \(did you mean 'train'\?\)"):
        load_recipe(None, ["trian.lr=1"])


def test_overrides_are_typed_yaml_values() -> None:
    recipe = load_recipe(None, ["train.lr=3e-4", "eval.k=[1, 10]", "lora.enabled=false", "data.path=null"])
    assert recipe.train.lr == pytest.approx(3e-4)
    assert recipe.eval.k == [1, 10]
    assert recipe.lora.enabled is False
    assert recipe.data.path is None


def test_malformed_override_and_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not of the form key.sub=value"):
        load_recipe(None, ["train.lr"])
    bad = write(tmp_path, "train:\n  lr: [1,\n")
    with pytest.raises(RecipeError, match=r"not valid YAML.*line \d+, column \d+"):
        load_recipe(bad)


def test_recipe_is_frozen() -> None:
    recipe = Recipe()
    with pytest.raises(Exception):
        recipe.train.lr = 1.0  # type: ignore[misc]


def test_dump_round_trips(tmp_path: Path) -> None:
    recipe = load_recipe(None, ["task.name=next_item", "train.epochs=2"])
    path = write(tmp_path, dump_recipe(recipe))
    assert load_recipe(path).model_dump(exclude={"name"}) == recipe.model_dump(exclude={"name"})


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    assert load_recipe(write(tmp_path, "task:\n  name: next_action\n")).name == "r"


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_loads(path: Path) -> None:
    recipe = load_recipe(path)
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("#") and ("evtlm " in first_line or "make " in first_line), (
        f"{path.name} must begin with a comment giving the command that runs it"
    )
    assert yaml.safe_load(path.read_text())  # not empty
    assert recipe.name


def test_recipes_folder_is_not_empty() -> None:
    assert len(RECIPES) >= 4, "the shipped recipes (purchase, next_action, next_item, pretrain) are missing"


# ------------------------------------------------------------ semantic checks (issue 12 finding 4)
BAD_PRESET = "data:\n  preset: taobo\n  path: x.csv\n"
BAD_SPLIT = "task:\n  name: purchase\n  level: user\nsplit:\n  method: leave_one_out\n"
BAD_SHAPE = "model:\n  scratch:\n    n_embd: 100\n    n_head: 3\n"


@pytest.mark.parametrize("text, line", [
    (BAD_PRESET, "data.preset: got 'taobo', expected a known preset: did you mean 'taobao'?"),
    (BAD_SPLIT, "split.method: got 'leave_one_out' with a user-level purchase task"),
    (BAD_SHAPE, "model.scratch.n_embd: got 100, expected a multiple of model.scratch.n_head=3 (e.g. 99 or 102)"),
], ids=["preset", "split", "shape"])
def test_validate_rejects_recipes_that_would_fail_minutes_into_a_run(tmp_path: Path, capsys, text: str, line: str) -> None:
    """Issue 12 (4): each of these passed `evtlm validate` and failed once the run had started."""
    assert main(["validate", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 1 problem in the recipe") and f"\n  {line}" in err and "Traceback" not in err


def test_validate_lists_every_problem_of_one_recipe_one_per_line(tmp_path: Path, capsys) -> None:
    """All three semantic problems and a schema error in one recipe: one call, one line each."""
    path = write(tmp_path, BAD_PRESET + BAD_SPLIT + BAD_SHAPE + "train:\n  lr_rate: 1\n")
    assert main(["validate", str(path)]) == 2
    head, *lines = capsys.readouterr().err.rstrip("\n").split("\n")
    assert head.startswith(f"error: 4 problems in the recipe {path}")
    assert [line.split(":")[0].strip() for line in lines] == ["data.preset", "model.scratch.n_embd", "split.method",
                                                               "train.lr_rate"]


def test_every_semantic_check_names_field_value_and_expectation() -> None:
    overrides = ["verbalize.timezone=Asia/Shangai", "data.start=yesterday", "eval.k=[0, 5]", "eval.sasrec.dim=30",
                 "eval.sasrec.heads=4", "task.name=pretrain", "task.formulation=stream", "data.options={x: 1}"]
    with pytest.raises(RecipeError) as info:
        load_recipe(None, overrides)
    lines = info.value.problems
    assert lines == [
        "data.options: got options ['x'] without a preset, expected data.preset to be set (options belong to a preset) "
        "or no data.options",
        "data.start: got 'yesterday', expected an ISO-8601 date or time such as '2017-11-25 00:00'",
        "eval.k: got [0, 5], expected list lengths of at least 1 ([0] cannot rank anything)",
        "eval.sasrec.dim: got 30, expected a multiple of eval.sasrec.heads=4 (e.g. 28 or 32): each attention head "
        "gets dim / heads dimensions",
        "task.formulation: got 'stream' for task pretrain, expected 'example' or 'auto' (streams are for next_action, "
        "next_item, purchase)",
        "verbalize.timezone: unknown time zone 'Asia/Shangai' in verbalize.timezone, did you mean 'Asia/Shanghai'? "
        "(IANA names such as 'Asia/Shanghai', 'Europe/London', 'UTC')",
    ]
    with pytest.raises(RecipeError, match=r"eval.baselines.0: got 'gbtt', expected a baseline of task purchase: did you "
                                          r"mean 'gbt'\? valid: 'gbt', 'popularity', 'prior'"):
        load_recipe(None, ["eval.baselines=[gbtt]"])
    with pytest.raises(RecipeError, match=r"task.max_tokens: got 1024, expected at most model.scratch.n_positions=512"):
        load_recipe(None, ["task.max_tokens=1024", "model.when_unavailable=scratch"])
    with pytest.raises(RecipeError, match=r"task.max_tokens: got 2048, expected at most 1024, the longest context of "
                                          r"model.base 'gpt2'"):
        load_recipe(None, ["task.max_tokens=2048", "model.scratch.n_positions=2048"])
    with pytest.raises(RecipeError, match=r"data.end: got '2017-11-01', expected a time after data.start '2017-12-01'"):
        load_recipe(None, ["data.start=2017-12-01", "data.end=2017-11-01"])
    with pytest.raises(RecipeError, match=r"decode.num_beams: got 5, expected at least 20 with decode.method=beam"):
        load_recipe(None, ["task.name=next_item", "task.formulation=example", "decode.method=beam", "decode.num_beams=5"])


def test_valid_neighbours_of_the_checks_still_load() -> None:
    """The checks reject what cannot work, nothing more: session-level purchase under leave-one-out,
    YAML dates for data.start, a context that fits, pandas' 'utc'."""
    recipe = load_recipe(None, ["task.level=session", "split.method=leave_one_out", "data.start=2017-11-25",
                                "model.scratch.n_embd=96", "model.scratch.n_head=3", "verbalize.timezone=utc",
                                "task.max_tokens=512", "model.when_unavailable=scratch", "eval.baselines=[gbt]"])
    assert recipe.data.start == "2017-11-25" and recipe.split.method == "leave_one_out"


def test_validate_takes_the_three_bad_recipes_in_one_call(tmp_path: Path, capsys) -> None:
    """The acceptance of issue 12 (4): one `evtlm validate` call rejects each, naming every problem."""
    paths = []
    for name, text in (("preset", BAD_PRESET), ("split", BAD_SPLIT), ("shape", BAD_SHAPE)):
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(text)
    assert main(["validate", *map(str, paths)]) == 2
    err = capsys.readouterr().err
    assert [line.split(" in the recipe ")[1].split(" ")[0] for line in err.splitlines() if line.startswith("error:")] == \
        [str(p) for p in paths]
    for field in ("data.preset: got 'taobo'", "split.method: got 'leave_one_out'", "model.scratch.n_embd: got 100"):
        assert f"\n  {field}" in err


def test_a_flag_a_section_rejects_is_one_line_not_a_traceback(tmp_path: Path, capsys) -> None:
    """Commands build recipe sections from their flags; the semantic checks then reject them there."""
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,action,timestamp\n1,a,view,2017-11-25 08:00\n")
    assert main(["verbalize", str(log), "--preset", "taobo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: preset: got 'taobo', expected a known preset: did you mean 'taobao'?")
    assert err.count("\n") == 1 and "see `evtlm verbalize --help`" in err
