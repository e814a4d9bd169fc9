"""The ``decode``, ``eval`` and ``output`` sections: how answers are read, how the model is scored
beside the baselines (SASRec, the gbts) and where the run goes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from evtlm.recipe import checks
from evtlm.recipe.base import Section


# ------------------------------------------------------------------------- decode, eval, output
class DecodeConfig(Section):
    """How answers are read from the model, always inside the task's label space."""

    method: Literal["auto", "first_token", "sequence", "beam"] = Field(
        "auto",
        description="auto: first-token softmax for closed sets, exact scoring or trie beam search for items")
    top_k: int = Field(10, ge=1, description="items returned per user (next_item)")
    num_beams: int = Field(20, ge=1, description="beams of the trie-constrained search (at least top_k)")
    batch_size: int = Field(32, ge=1, description="prompts per forward pass")
    exclude_history_items: bool = Field(False, description="next_item: never recommend an item already in the user's history")
    exhaustive_max_items: int = Field(
        256, ge=1,
        description="auto: score every item exactly up to this catalog size, trie beam search above it")
    score_eos: bool = Field(
        True,
        description="score answer + eos (what closed-task training appends), so ' Product 100' cannot win over "
                    "' Product 1002' merely by being a prefix of it: pass end_id=tokenizer.eos_token_id")


class SasrecConfig(Section):
    """The SASRec baseline (next_item): see `evtlm.evaluate.sasrec` for what these defaults were tuned on."""

    dim: int = Field(64, ge=8, description="embedding size")
    max_len: int = Field(50, ge=2, description="latest items per history")
    blocks: int = Field(2, ge=1, description="self-attention blocks")
    heads: int = Field(2, ge=1, description="attention heads")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout")
    lr: float = Field(3e-3, gt=0, description="Adam learning rate")
    batch_size: int = Field(128, ge=1, description="sequences per step")
    epochs: int = Field(30, ge=1, description="at most; early stopping usually ends sooner")
    patience: int = Field(3, ge=1, description="epochs without a better validation NDCG@10")
    negatives: int = Field(
        2000, ge=1,
        description="sampled softmax (catalogs over full_softmax_items): uniform negatives shared by a batch. 256 -> 1000 -> "
                    "2000 on Taobao (54k items): HR@10 0.125 -> 0.130 -> 0.131, CPU 45 -> 62 -> 106 s")
    full_softmax_items: int = Field(
        10_000, ge=1,
        description="catalog size up to which the loss is a full softmax (chunked: memory stays small). Its cost is targets x "
                    "items per epoch, ~15 ns each on one core: 54k items x 84k targets ~70 s/epoch")
    valid_users: float = Field(0.1, gt=0, lt=1, description="share of users whose last training item validates")
    threads: int | None = Field(
        1, ge=1,
        description="torch CPU threads while fitting/scoring (None: torch's default). 1 by default: a model this small gains "
                    "little from more, and on a shared machine OpenMP contention made fits 10x slower")
    seed: int = Field(42, description="seed of initialisation and sampling")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> SasrecConfig:
        checks.raise_problems(type(self).__name__, checks.sasrec_problems(self))
        return self


class GbtConfig(Section):
    """The gradient-boosted trees baseline of purchase, sklearn HistGradientBoostingClassifier."""

    max_iter: int = Field(300, ge=1, description="boosting iterations")
    learning_rate: float = Field(0.05, gt=0, description="boosting learning rate")
    max_leaf_nodes: int = Field(31, ge=2, description="leaves per tree")
    l2_regularization: float = Field(1.0, ge=0, description="L2 penalty on leaf values")
    threads: int | None = Field(
        1, ge=1,
        description="OpenMP threads (None: sklearn's default). 1 by default: on 6.5k examples it fit in 0.8 s against 17 s with "
                    "2 contended threads; set None for millions of examples on many cores")
    seed: int = Field(42, description="seed of the model")
    max_train_examples: int | None = Field(
        1_000_000, ge=100,
        description="the trees fit on a seeded sample of this many training examples when there are more (None: all); "
                    "every shipped log has fewer. A 20M-event shop has 4.9M purchase cutoffs: with all of them the final "
                    "evaluation peaked at 8.8 GB, over 10 minutes of it tree growing")


class ActionGbtConfig(GbtConfig):
    """The gradient-boosted trees baseline of next_action (multiclass, on the last events' features)."""

    max_iter: int = Field(
        600, ge=1,
        description="boosting iterations (early stopping on 10% of training cuts them short); slower, smaller trees than "
                    "purchase's: on the Taobao next-action split (51k training examples, 3 seeds) 600 x 0.03 with 15 leaves "
                    "beat 300 x 0.05 with 31 on validation log loss (0.379 vs 0.383)")
    learning_rate: float = Field(0.03, gt=0, description="boosting learning rate")
    max_leaf_nodes: int = Field(15, ge=2, description="leaves per tree")
    seed: int = Field(42, description="seed of the model (and of the early-stopping hold-out)")


class EvalConfig(Section):
    """Evaluation beside the baselines: split, cut-offs, which baselines, calibration."""

    split: Literal["valid", "test"] = Field("test", description="split `evtlm evaluate` and the final evaluation score")
    k: list[int] = Field(default_factory=lambda: [1, 5, 10, 20], description="cut-offs of HR@K, NDCG@K, MRR@K")
    baselines: list[str] | None = Field(None, description="None: every baseline that fits the task")
    max_examples: int | None = Field(None, ge=1, description="seeded sample, the same examples for every method")
    fit_max_examples: int = Field(
        500, ge=1,
        description="training-time task metric (early stopping): validation examples it is computed on, model only")
    fit_max_targets: int = Field(
        50_000, ge=1,
        description="the same for the stream formulation: one pass per window scores every target, so it reads all of "
                    "validation up to this many targets (every shipped log), a seeded sample of them beyond (a "
                    "100M-event log has millions)")
    ece_bins: int = Field(10, ge=2, description="bins of the expected calibration error and the reliability diagram")
    calibration: Literal["auto", "temperature", "platt"] = Field(
        "auto",
        description="purchase: the calibrator fitted on validation (evtlm.evaluate.calibration). auto: the identity, "
                    "temperature or Platt scaling, whichever has the lowest 5-fold cross-fitted log loss within validation; "
                    "temperature rescales the logit, platt also shifts it to validation's buy rate")
    sasrec: SasrecConfig = Field(default_factory=SasrecConfig)
    gbt: GbtConfig = Field(default_factory=GbtConfig)
    gbt_action: ActionGbtConfig = Field(default_factory=ActionGbtConfig)

    @field_validator("k")
    @classmethod
    def _list_lengths(cls, value: list[int]) -> list[int]:
        why = checks.k_problem(value)
        if why:
            raise PydanticCustomError(checks.CHECK, why)
        return value


class OutputConfig(Section):
    """Where the run directory goes."""

    dir: str = Field("runs", description="where run directories go")
    name: str | None = Field(None, description="defaults to the recipe file's stem")
    overwrite: bool = Field(
        False,
        description="replace an existing run directory (otherwise an existing run is an error unless --resume)")
