"""The recipe: one typed, frozen schema that every pipeline stage reads its section from.

A recipe YAML names the data, how it is verbalized, the task, the split, the model, LoRA, the
training loop, decoding, evaluation and where the run goes. Defaults are defined here and only
here, each setting documented in its own ``Field(description=...)`` (the README's recipe
reference is generated from them, `evtlm.reference`); every model forbids unknown keys, so a
typo is an error with its dotted path, never a silently ignored setting.

One module per section group (`evtlm.recipe.data`, ``verbalize``, ``task``, ``model``,
``train``, ``evaluation``), `evtlm.recipe.schema` for the whole `Recipe`,
`evtlm.recipe.loading` for YAML and overrides, `evtlm.recipe.checks` for the checks that need
more than a type. This package imports no pipeline stage at module level: stages import it.

>>> r = Recipe()                      # every default: the synthetic shop, purchase, GPT-2 + LoRA
>>> r.task.name, r.model.base, r.lora.r
('purchase', 'gpt2', 8)
"""

from evtlm.recipe.base import ACTIONS, SESSION_GAP_MINUTES, Action, Section
from evtlm.recipe.data import CatalogConfig, ColumnsConfig, DataConfig, SyntheticConfig, TimestampConfig
from evtlm.recipe.evaluation import ActionGbtConfig, DecodeConfig, EvalConfig, GbtConfig, OutputConfig, SasrecConfig
from evtlm.recipe.loading import dump_recipe, load_recipe, problem_lines
from evtlm.recipe.model import LoraConfig, ModelConfig, ScratchConfig
from evtlm.recipe.schema import Recipe
from evtlm.recipe.task import SplitConfig, TaskConfig
from evtlm.recipe.train import TrainConfig
from evtlm.recipe.verbalize import VerbalizeConfig

__all__ = ["ACTIONS", "SESSION_GAP_MINUTES", "Action", "Section", "CatalogConfig", "ColumnsConfig", "DataConfig",
           "SyntheticConfig", "TimestampConfig", "ActionGbtConfig", "DecodeConfig", "EvalConfig", "GbtConfig",
           "OutputConfig", "SasrecConfig", "dump_recipe", "load_recipe", "problem_lines", "LoraConfig", "ModelConfig",
           "ScratchConfig", "Recipe", "SplitConfig", "TaskConfig", "TrainConfig", "VerbalizeConfig"]
