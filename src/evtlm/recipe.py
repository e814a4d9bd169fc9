"""The recipe: one typed, frozen schema that every pipeline stage reads its section from.

A recipe YAML names the data, how it is verbalized, the task, the split, the model, LoRA, the
training loop, decoding, evaluation and where the run goes. Defaults are defined here and only
here; every model forbids unknown keys, so a typo is an error with its dotted path, never a
silently ignored setting.

>>> r = Recipe()                      # every default: the synthetic shop, purchase, GPT-2 + LoRA
>>> r.task.name, r.model.base, r.lora.r
('purchase', 'gpt2', 8)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from evtlm import recipe_checks as checks
from evtlm.errors import RecipeError, did_you_mean

# The canonical action vocabulary. Readers map raw values (`pv`, `addtocart`, `transaction`) to
# these; the order is the category order of the canonical `action` column.
ACTIONS: tuple[str, ...] = ("view", "cart", "remove_from_cart", "favorite", "purchase", "return")
SESSION_GAP_MINUTES = 30.0  # a longer pause starts a new visit, where a log has no session ids (data.session_gap_minutes)
Action = Literal["view", "cart", "remove_from_cart", "favorite", "purchase", "return"]


class Section(BaseModel):
    """Base of every recipe section: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------- data
class ColumnsConfig(Section):
    """Which raw column holds each canonical field."""

    user: str = Field("user_id", description="raw column of the user id")
    item: str | None = Field("item_id", description="raw column of the item id (None: a log without items)")
    action: str | None = Field("action", description="raw column of the action (None: set data.constant_action)")
    timestamp: str = Field("timestamp", description="raw column of the event time")
    session: str | None = Field(None, description="raw column of a session id (None: visits from data.session_gap_minutes)")
    extra: dict[str, str] = Field(
        default_factory=dict,
        description="canonical name -> raw column, for optional numeric/text columns, e.g. {price: UnitPrice}")


class TimestampConfig(Section):
    """How raw timestamps are read. Naive times are taken to be in ``timezone``."""

    unit: Literal["auto", "s", "ms", "us", "ns", "iso"] = Field(
        "auto",
        description="auto: unix s/ms/us/ns told apart by magnitude, or ISO strings")
    format: str | None = Field(None, description="strptime format for string timestamps; None = ISO-8601")
    timezone: str = Field("UTC", description="zone of naive timestamps")


class CatalogConfig(Section):
    """An item catalog joined on item id: item -> title, category, brand, price, …"""

    path: str = Field(description="the catalog file; relative: to the current directory")
    item: str = Field("item_id", description="raw catalog column of the item id")
    fields: dict[str, str] = Field(default_factory=dict, description="canonical field -> raw column")
    format: Literal["auto", "csv", "tsv", "parquet", "jsonl"] = Field("auto", description="as data.format")
    delimiter: str | None = Field(None, description="as data.delimiter")


class SyntheticConfig(Section):
    """The embedded synthetic shop, used when ``data.path`` is not set."""

    users: int = Field(2000, ge=1, description="simulated users")
    items: int = Field(500, ge=10, description="catalog size")
    categories: int = Field(12, ge=2, description="item categories")
    days: int = Field(60, ge=7, description="days simulated")
    start: str = Field("2024-01-01", description="first simulated day (ISO date)")
    seed: int = Field(7, description="the same seed gives the same shop, byte for byte")

    @model_validator(mode="after")
    def _categories_fit_items(self) -> SyntheticConfig:
        checks.raise_problems(type(self).__name__, checks.synthetic_problems(self))
        return self


class DataConfig(Section):
    """Where events come from and how they are mapped to the canonical table."""

    preset: str | None = Field(None, description="a known public format (see evtlm.ingest.presets); fields below override it")
    path: str | None = Field(
        None,
        description="a file, a folder of files or a glob (one log); None: the embedded synthetic shop (see `synthetic`); "
                    "relative: to the current directory")
    options: dict[str, Any] = Field(default_factory=dict, description="preset-specific options")
    format: Literal["auto", "csv", "tsv", "parquet", "jsonl"] = Field(
        "auto",
        description="file format; auto: from the extension (.csv, .tsv, .parquet, .jsonl, optionally .gz)")
    delimiter: str | None = Field(None, description="field separator of CSV/TSV; None: sniffed")
    encoding: str = Field("utf-8", description="of CSV/TSV text, e.g. latin-1 for old spreadsheet exports")
    has_header: bool = Field(True, description="false for a header-less file (then give data.column_names)")
    column_names: list[str] | None = Field(None, description="names for a header-less file")
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    timestamp: TimestampConfig = Field(default_factory=TimestampConfig)
    actions: dict[str, Action] = Field(default_factory=dict, description="raw value -> canonical action")
    constant_action: Action | None = Field(None, description="a log without an action column (clicks only)")
    drop_actions: list[str] = Field(default_factory=list, description="raw values dropped (and counted)")
    start: str | None = Field(None, description="keep events at or after (ISO); earlier ones are counted, dropped")
    end: str | None = Field(None, description="keep events before (ISO)")
    session_gap_minutes: float = Field(
        SESSION_GAP_MINUTES, gt=0,
        description="a gap longer than this starts a new visit (when the log has no session column)")
    dedupe: bool = Field(True, description="drop exact duplicate rows (counted in the data report)")
    on_bad_rows: Literal["error", "skip"] = Field(
        "error",
        description="error: stop at bad rows (file, rows, column, value); skip: drop and count them by reason")
    catalog: CatalogConfig | None = Field(
        None,
        description="an item catalog file (titles, categories, prices) for `verbalize.item: title | template`")
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    max_users: int | None = Field(None, ge=1, description="keep a deterministic subset of users")
    by_shard: bool = Field(
        False,
        description="a partition folder (`evtlm partition`) as data.path: prepare it shard by shard into tokenized shards, each "
                    "training process reading only its own (evtlm.data.shard_prepare); false: read it whole")

    @field_validator("timestamp")
    @classmethod
    def _known_timezone(cls, value: TimestampConfig) -> TimestampConfig:
        """A typo'd ``data.timestamp.timezone`` fails here, with a suggestion, at recipe load
        (`evtlm validate`, `--timezone`), not as a ZoneInfoNotFoundError traceback mid-read."""
        why = checks.timezone_problem(value.timezone, "data.timestamp.timezone")
        if why:
            raise PydanticCustomError("unknown_timezone", why)
        return value

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        """``data.preset: taobo`` fails at load with the closest name, not when the data is read."""
        why = checks.preset_problem(value)
        if why:
            raise PydanticCustomError(checks.CHECK, why)
        return value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _dates_as_text(cls, value: Any) -> Any:
        """YAML reads ``start: 2017-11-25`` as a date: take it as the ISO text it was written as."""
        import datetime as dt

        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else \
            value.isoformat() if isinstance(value, dt.date) else value

    @field_validator("start", "end")
    @classmethod
    def _real_date(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Dates that parse, and an ``end`` after ``start`` (field validators, not a model one:
        each runs even when another field of the section failed, so every problem is listed)."""
        why = checks.date_problem(value)
        if why is None and info.field_name == "end":
            why = checks.order_problem(info.data.get("start"), value)
        if why:
            raise PydanticCustomError(checks.CHECK, why)
        return value

    @field_validator("options")
    @classmethod
    def _preset_options(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Options the preset takes (skipped when the preset itself failed: that is reported)."""
        if "preset" in info.data:
            checks.raise_problems(cls.__name__, checks.options_problems(value, info.data["preset"]))
        return value


# ----------------------------------------------------------------------------------- verbalize
class VerbalizeConfig(Section):
    """How events become text. See `evtlm.text.verbalize` for worked examples of every mode."""

    actor: str = Field("User {user_id}", description="how a history opens; fields: {user_id}")
    verbs: dict[Action, str] = Field(
        default_factory=lambda: {
            "view": "viewed {item}",
            "cart": "added {item} to cart",
            "remove_from_cart": "removed {item} from cart",
            "favorite": "saved {item}",
            "purchase": "bought {item}",
            "return": "returned {item}",
        },
        description="phrase per action; {item} is the rendered item")
    item: Literal["id", "title", "template", "token"] = Field(
        "id",
        description="how an item is written: id (\"Product 1002\": item_prefix + id), title (the catalog title), template "
                    "(item_template over catalog fields), token (<item_1002>: set by model.item_tokens)")
    item_prefix: str = Field("Product", description="`id` mode: \"Product 1002\"")
    item_template: str = Field("{title}", description="`template` mode, over catalog fields")
    time: Literal["none", "absolute", "relative"] = Field(
        "relative",
        description="none; absolute (absolute_format); relative gaps in words (\"3 minutes later\", \"the next day\")")
    absolute_format: str = Field("%Y-%m-%d %H:%M", description="strftime format of `absolute` times")
    timezone: str = Field("UTC", description="`absolute` times are shown in this zone (e.g. Asia/Shanghai for Taobao)")
    session_breaks: bool = Field(True, description="mark the start of each later visit with session_phrase")
    session_phrase: str = Field("New visit", description="opens the first event of each later visit")
    repeat_shortcut: bool = Field(True, description="\"added it to cart\" when the item repeats")
    summaries: bool = Field(
        False,
        description="before each later visit, what a tree would count so far: \" So far: 12 views, 3 carts, 1 purchase; last "
                    "purchase 5 days ago.\" (events strictly before the visit's first event)")
    amount: str | None = Field(
        None,
        description="what an event was worth, before its full stop where the price is known (evtlm.ingest.money): a template "
                    "over {price}, {quantity} and {amount} (price x quantity), e.g. ' for £{amount:.2f}' or "
                    "' ({quantity:g} x £{price:.2f})'; null: no money in the text")
    amount_actions: list[Action] = Field(
        default_factory=lambda: ["cart", "purchase", "return"],
        description="which events carry it")

    @field_validator("amount")
    @classmethod
    def _amount_template(cls, value: str | None) -> str | None:
        """Only {price}, {quantity}, {amount}, with specs a number takes: a typo fails at load."""
        if value is None:
            return value
        try:
            value.format(price=1.5, quantity=2.0, amount=3.0)
        except (KeyError, IndexError, ValueError) as err:
            raise PydanticCustomError(
                "amount_template",
                f"cannot format {value!r} with price, quantity and amount ({type(err).__name__}: {err}): use only "
                "{price}, {quantity} and {amount}, with numeric format specs such as {amount:.2f}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        """The same check as data.timestamp.timezone: a typo fails at load, not at verbalization."""
        why = checks.timezone_problem(value, "verbalize.timezone")
        if why:
            raise PydanticCustomError("unknown_timezone", why)
        return value


# --------------------------------------------------------------------------------- task, split
class TaskConfig(Section):
    """What is predicted. Each task owns its prompt, label space and metrics (evtlm.tasks)."""

    name: Literal["next_action", "next_item", "purchase", "pretrain"] = Field(
        "purchase",
        description="what is predicted: next_action, next_item, purchase (yes/no), pretrain (LM on event text)")
    level: Literal["user", "session"] = Field("user", description="purchase only")
    horizon_days: float = Field(7.0, gt=0, description="purchase (user level): buys within H after cutoff")
    cutoff_every_days: float | None = Field(
        None, gt=0,
        description="purchase (user level): days between training cutoffs, each labelled over its full horizon inside the "
                    "training window. None: one every horizon_days. Denser cutoffs give every user more labels (the stream "
                    "formulation reads them all in one pass per window)")
    min_history: int = Field(1, ge=1, description="events a prompt needs at least")
    examples_per_user: int | None = Field(
        None, ge=1,
        description="cap on training examples per user (latest); valid/test keep all")
    target_actions: list[Action] | None = Field(None, description="next_*: only these events are targets; None: all")
    max_tokens: int = Field(512, ge=16, description="context budget; oldest events are dropped first")
    formulation: Literal["auto", "stream", "example"] = Field(
        "auto",
        description="stream: one forward pass over a window of the user's events supervises every target in it "
                    "(evtlm.data.stream; next_item, next_action, purchase); example: one prompt per target with a question. "
                    "auto: stream for next_item (with item tokens) and next_action, example otherwise")
    stream_min_context: float = Field(
        0.5, ge=0, lt=1,
        description="stream evaluation: share of a window kept as context before any target it reads")


class SplitConfig(Section):
    """Leakage-safe splits: global time windows (default) or leave-one-out."""

    method: Literal["time", "leave_one_out"] = Field(
        "time",
        description="time: global cutoffs (train < valid < test windows); leave_one_out: last event per user is test")
    valid_days: float = Field(7.0, gt=0, description="length of the validation window before the test window (time split)")
    test_days: float = Field(7.0, gt=0, description="length of the test window at the end of the log (time split)")


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
    copy_path: bool | None = Field(
        None,
        description="next_item stream: a learned pointer over the items already in the history, mixed with the catalog "
                    "distribution (evtlm.train.stream_model); None: on for next_item streams")
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
        """Checks that read several sections (`evtlm.recipe_checks.across_sections`), run even when
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


# ------------------------------------------------------------------------------------ loading
def load_recipe(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe YAML (or the defaults when ``path`` is None) and apply ``a.b=c`` overrides.

    Override values are parsed as YAML, so ``train.lr=3e-4`` is a float and
    ``eval.k=[1,10]`` a list. Every problem is reported at once, each with its dotted path.
    Relative data paths (``data.path``, ``data.catalog.path``) are resolved against the current
    directory and kept absolute.

    >>> load_recipe(None, ["train.lr=3e-4", "task.name=next_action"]).train.lr
    0.0003
    >>> load_recipe(None, ["train.lr_rate=1", "train.epochs=lots"])
    Traceback (most recent call last):
    ...
    evtlm.errors.RecipeError: 2 problems in the recipe: train.epochs: expected a number, got 'lots'; train.lr_rate: unknown key (did you mean 'lr'?), <defaults> with overrides train.lr_rate=1 train.epochs=lots, fix the keys above (`evtlm recipe show` prints every valid key with its default)
    """
    source = "<defaults>" if path is None else str(path)
    raw: dict[str, Any] = {} if path is None else _read_yaml(Path(path))
    for item in overrides:
        _apply_override(raw, item)
    _absolute_data_paths(raw)
    if path is not None and not raw.get("name"):
        raw["name"] = Path(path).stem
    where = source + (f" with overrides {' '.join(overrides)}" if overrides else "")
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        problems = problem_lines(exc)
        noun = "problem" if len(problems) == 1 else "problems"
        raise RecipeError(
            f"{len(problems)} {noun} in the recipe: " + "; ".join(problems),
            where=where,
            fix="fix the keys above (`evtlm recipe show` prints every valid key with its default)",
            problems=problems,
        ) from None


def dump_recipe(recipe: Recipe) -> str:
    """The fully resolved recipe as YAML (every default written out)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}", fix="give a path to a .yaml file, e.g. recipes/purchase.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        raise RecipeError(f"not valid YAML ({getattr(exc, 'problem', exc)})", where=where, fix="check indentation and quoting") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RecipeError(f"a recipe must be a mapping of sections, got {type(data).__name__}", where=str(path))
    return data


def _absolute_data_paths(raw: dict[str, Any]) -> None:
    """``data.path`` and ``data.catalog.path`` made absolute, relative ones against the current
    directory (where `make finetune` and the shipped recipes' ``../shared/data/...`` expect them,
    as for any path given on a command line). The loaded recipe then names the same files from
    any directory, and so does the run's ``recipe.resolved.yaml`` (`evtlm evaluate --run`)."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return
    for node in (data, data.get("catalog")):
        value = node.get("path") if isinstance(node, dict) else None
        if isinstance(value, str) and value.strip():
            path = Path(value).expanduser()
            node["path"] = str(path if path.is_absolute() else path.resolve())


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``raw['a']['b'] = value`` for the override ``a.b=value`` (value parsed as YAML)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override {item!r} is not of the form key.sub=value", fix="e.g. train.epochs=1")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def problem_lines(exc: ValidationError, prefix: str = "") -> list[str]:
    """Every error of ``exc`` as ``dotted.path: what is wrong (what is allowed)``, sorted.

    ``prefix`` places a section's errors in the recipe (``"data."`` for a `DataConfig`).
    """
    return sorted(prefix + _describe(err) for err in exc.errors())


def _describe(err: dict[str, Any]) -> str:
    """One pydantic error as ``dotted.path: what is wrong (what is allowed)``."""
    loc = [str(p) for p in err["loc"]]
    path = ".".join(loc) or "<root>"
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        return f"{path}: unknown key ({did_you_mean(loc[-1], valid)})"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        expected = "a whole number" if kind.startswith("int") else "a number"
        return f"{path}: expected {expected}, got {value!r}"
    if kind == "literal_error":
        return f"{path}: got {value!r}, expected one of {err['ctx']['expected']}"
    if kind in (checks.CHECK, "unknown_timezone"):  # semantic checks word value and expectation themselves
        return f"{path}: {err['msg']}"
    return f"{path}: {err['msg']} (got {value!r})"


def _valid_keys(loc: list[str]) -> list[str]:
    """Field names of the section at ``loc`` (e.g. ['train'] -> TrainConfig's fields)."""
    model: type[BaseModel] = Recipe
    for part in loc:
        field_info = model.model_fields.get(part)
        annotation = getattr(field_info, "annotation", None)
        candidates = [a for a in (annotation, *getattr(annotation, "__args__", ())) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return []
        model = candidates[0]
    return list(model.model_fields)
