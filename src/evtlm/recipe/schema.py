"""`Recipe`, the whole schema: every section with its defaults, and the checks that read several
sections at once (`evtlm.recipe.checks.across_sections`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, model_validator

from evtlm.recipe import checks
from evtlm.recipe.base import Section
from evtlm.recipe.data import DataConfig
from evtlm.recipe.evaluation import DecodeConfig, EvalConfig, OutputConfig
from evtlm.recipe.model import LoraConfig, ModelConfig
from evtlm.recipe.task import SplitConfig, TaskConfig
from evtlm.recipe.train import TrainConfig
from evtlm.recipe.verbalize import VerbalizeConfig


class Recipe(Section):
    """A whole recipe. Every section has defaults; a YAML file overrides what it names."""

    name: str | None = Field(None, description="run name; defaults to the recipe file's stem (runs/<name>/)")
    description: str | None = Field(None, description="free text, shown in the run card")
    data: DataConfig = Field(default_factory=DataConfig)
    verbalize: VerbalizeConfig = Field(default_factory=VerbalizeConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="wrap")
    @classmethod
    def _check_across_sections(cls, data: Any, handler: Any) -> Recipe:
        """Checks that read several sections (`evtlm.recipe.checks.across_sections`), run even when
        another section failed its own checks, so that every problem is reported in one call."""
        if not isinstance(data, dict):  # a Recipe instance (already validated) or garbage for the schema
            return handler(data)
        try:
            recipe = handler(data)
        except ValidationError as exc:
            problems = checks.across_sections(_sections_alone(data))
            if problems:
                raise checks.merged(cls.__name__, exc, problems) from None
            raise
        checks.raise_problems(cls.__name__, checks.across_sections({name: getattr(recipe, name) for name in CROSS_CHECKED}))
        return recipe


CROSS_CHECKED = ("task", "split", "model", "decode", "eval")  # the sections `across_sections` reads


def _sections_alone(data: dict[str, Any]) -> dict[str, Section]:
    """Each cross-checked section of raw recipe data validated on its own; sections that fail are
    left out (their own errors are reported by the whole-recipe validation)."""
    out: dict[str, Section] = {}
    for name in CROSS_CHECKED:
        model = Recipe.model_fields[name].annotation
        raw = data.get(name)
        try:
            out[name] = model.model_validate({} if raw is None else raw)
        except ValidationError:
            continue
    return out
