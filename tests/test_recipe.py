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
    assert recipe.lora.target_modules == ["c_attn", "c_proj", "c_fc"]


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
    with pytest.raises(RecipeError, match=r"task.name: got 'nextitem', expected one of .*'next_item'"):
        load_recipe(None, ["task.name=nextitem"])


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
