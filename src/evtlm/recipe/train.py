"""The ``train`` section: the one training loop's settings (`evtlm.train.fit` reads them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from evtlm.recipe.base import Section


# ----------------------------------------------------------------------------------- training
class TrainConfig(Section):
    """The one training loop (evtlm.train.fit): schedule, batching, evaluation and checkpoints."""

    seed: int = Field(42, description="seeds data order, dropout and initialisation")
    epochs: float = Field(1.0, gt=0, description="passes over the training examples")
    max_steps: int | None = Field(None, ge=1, description="overrides epochs when set")
    batch_size: int = Field(16, ge=1, description="examples per process per step")
    grad_accum: int = Field(
        1, ge=1,
        description="steps accumulated per optimizer update (effective batch = batch_size x grad_accum x processes)")
    lr: float = Field(2e-4, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.05, ge=0, le=1, description="share of optimizer steps with a linear warmup")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="learning-rate schedule after warmup")
    max_grad_norm: float | None = Field(1.0, gt=0, description="gradient clipping norm (None: no clipping)")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 on a GPU that supports it, else full precision")
    batching: Literal["length_grouped", "packed", "plain"] = Field(
        "length_grouped",
        description="length_grouped: similar lengths per batch; packed: several examples per row, kept apart; plain")
    eval_every: int = Field(200, ge=1, description="optimizer steps")
    save_every: int = Field(200, ge=1, description="optimizer steps between checkpoints (for --resume)")
    early_stopping_patience: int | None = Field(3, ge=1, description="evaluations without improvement")
    log_every: int = Field(10, ge=1, description="optimizer steps between log lines (train_log.csv, TensorBoard)")
    max_eval_examples: int | None = Field(2000, ge=1, description="cap on valid examples per evaluation")
    negatives: int | None = Field(
        None, ge=1,
        description="stream next_item: softmax over the batch's answers plus this many uniformly drawn items when the label "
                    "space is larger (training only; evaluation ranks the whole catalog); None: full")
    threads: int | None = Field(
        None, ge=1,
        description="torch CPU threads for the whole run (None: torch's default). Small models gain little from more, and two "
                    "runs sharing 2 cores at 2 threads each ran 3-5x slower than at 1 thread each")

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `no` as false: `mixed_precision: no` (or `train.mixed_precision=no`)
        # means the "no" setting, not a type error
        return "no" if value is False else value
