"""The ``model`` and ``lora`` sections: the base LM, the scratch fallback, item tokens, the stream
read-out and the adapter (`evtlm.train.modeling` reads them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from evtlm.recipe import checks
from evtlm.recipe.base import Section


# ------------------------------------------------------------------------------ model and lora
class ScratchConfig(Section):
    """Size of the GPT-2 built from scratch when the base cannot be loaded."""

    n_layer: int = Field(4, ge=1, description="transformer blocks of the scratch GPT-2")
    n_head: int = Field(4, ge=1, description="attention heads (must divide n_embd)")
    n_embd: int = Field(128, ge=8, description="hidden size")
    n_positions: int = Field(512, ge=16, description="longest context in tokens (keep >= task.max_tokens)")
    vocab_size: int = Field(2048, ge=300, description="byte-level BPE vocabulary trained on the training-split text")
    pretrain_epochs: float = Field(1.0, ge=0, description="passes of causal-LM pretraining over the training event text")
    pretrain_max_steps: int | None = Field(None, ge=1, description="caps pretraining steps (overrides pretrain_epochs)")
    pretrain_lr: float = Field(1e-3, gt=0, description="pretraining learning rate")
    pretrain_block: int = Field(256, ge=8, description="tokens per pretraining row (chunks of whole streams)")
    pretrain_batch_size: int = Field(16, ge=1, description="pretraining rows per step")
    dropout: float = Field(0.1, ge=0, lt=1, description="residual and embedding dropout")
    attn_dropout: float = Field(
        0.0, ge=0, lt=1,
        description="attention-probability dropout; 0 lets CPU attention use its fused kernel (5x faster)")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ScratchConfig:
        checks.raise_problems(type(self).__name__, checks.scratch_problems(self))
        return self


class ModelConfig(Section):
    """The model: its base causal LM (a hub id, a local directory or a named base), the scratch
    fallback, item tokens and the stream read-out."""

    base: str = Field(
        "gpt2",
        description="HF hub id, local directory of a causal LM, or a named base (smollm2-135m: make base-smollm2)")
    tokenizer: str | None = Field(None, description="defaults to `base`")
    when_unavailable: Literal["error", "scratch"] = Field(
        "error",
        description="error: stop when the base cannot be loaded (offline); scratch: build, pretrain and use a small GPT-2 "
                    "(model.scratch) with a tokenizer trained on the training events")
    scratch: ScratchConfig = Field(default_factory=ScratchConfig)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="dtype the base weights are loaded in; auto: the library's default")
    item_tokens: bool | None = Field(
        None,
        description="one token per catalog item (<item_1002>), the catalog ranked by one product; None: on for next_item unless "
                    "task.formulation is example")
    item_init: Literal["random", "transitions"] = Field(
        "random",
        description="next_item streams: how the item tokens' rows start. random: the tokenizer's new rows; transitions: the "
                    "top singular directions of the training split's item-to-next-item counts (evtlm.train.item_init), so "
                    "items that follow each other start close. Test HR@10 / NDCG@10, seeds 0 / 1: Online Retail random "
                    "0.237 / 0.152, transitions 0.248 / 0.159 and 0.253 / 0.163; Taobao (sparse: 1,034 users, 54k items) "
                    "random 0.155 NDCG@10, transitions 0.146")
    copy_path: bool | None = Field(
        None,
        description="next_item stream: a learned pointer over the items already in the history, mixed with the catalog "
                    "distribution (evtlm.train.stream_model); None: on for next_item streams")
    markov_path: bool = Field(
        False,
        description="next_item stream: add a learned multiple of the cosine between the last item's row and every answer's "
                    "to the catalog logits (FPMC's last-item factor on the tied rows; evtlm.train.stream_model). Test, seed 0, "
                    "item_init=transitions: YOOCHOOSE HR@20 / MRR@20 off 0.668 / 0.381, on 0.681 / 0.394 (SASRec 0.665 / "
                    "0.380); Online Retail HR@10 / NDCG@10 off 0.247 / 0.159, on 0.242 / 0.161")
    pair_memory: bool = Field(
        False,
        description="next_item stream: a learned logit bias for every (last item, next item) pair among the training "
                    "targets, zero at the start (a full-rank bigram beside the low-rank item rows; the table holds which "
                    "pairs occur, never their counts; evtlm.train.stream_model). Online Retail test HR@10 / NDCG@10, seeds 42 / 0: "
                    "off 0.251 / 0.162, 0.253 / 0.166; on 0.244 / 0.162, 0.245 / 0.162 (no gain)")
    explore_loss: float = Field(
        1.0, ge=0,
        description="copy path, training: weight of the catalog head's own NLL added to the mixture's, so it learns every next "
                    "item and not only those the pointer cannot copy (0: the mixture alone); scoring unchanged")
    history_features: bool | None = Field(
        None,
        description="stream: counts and recency of the history read by a small MLP into every answer's logit (next_action: last "
                    "actions, action counts, a returning item, the last gap, and per target the next_action gbt's own inputs; "
                    "purchase: the gbt's RFM features as of each cutoff); None: on for next_action and purchase streams")
    feature_bins: int = Field(
        16, ge=0, le=256,
        description="purchase and next_action streams: each per-target feature also enters that MLP piecewise-linearly over "
                    "this many quantile bins of the training targets (evtlm.train.stream_model.piecewise_linear), beside its "
                    "standardised value: an MLP then bends at the values a tree would split on. 0: the standardised values "
                    "only. Test ROC-AUC, seeds 0 / 1 / 2: synthetic shop 0 bins 0.841 / 0.835 / 0.838, 8 bins 0.845 / 0.843 / "
                    "0.844, 16 bins 0.846 / 0.844 (gbt 0.836)")


class LoraConfig(Section):
    """The LoRA adapter (peft): rank, scaling, dropout and which modules it wraps."""

    enabled: bool = Field(True, description="False: full fine-tuning")
    r: int = Field(8, ge=1, description="LoRA rank")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    target_modules: list[str] | None = Field(
        None,
        description="None: the base architecture's projections (evtlm.train.modeling.lora_targets): GPT-2 c_attn, c_proj, c_fc; "
                    "Llama q/k/v/o_proj, gate/up/down_proj. The run's resolved recipe records the ones used")
    full_finetune_scratch: bool = Field(
        True,
        description="A scratch base (model.when_unavailable=scratch) is tiny and was pretrained minutes ago: train all its "
                    "weights. Measured on the synthetic purchase task, LoRA on it learned nothing (test AUC 0.47-0.55) where "
                    "full fine-tuning reached 0.61 in the same 300 steps.")
