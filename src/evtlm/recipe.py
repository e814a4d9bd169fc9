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

    user: str = "user_id"
    item: str | None = "item_id"
    action: str | None = "action"
    timestamp: str = "timestamp"
    session: str | None = None
    # canonical name -> raw column, for optional numeric/text columns, e.g. {price: UnitPrice}
    extra: dict[str, str] = Field(default_factory=dict)


class TimestampConfig(Section):
    """How raw timestamps are read. Naive times are taken to be in ``timezone``."""

    unit: Literal["auto", "s", "ms", "us", "ns", "iso"] = "auto"
    format: str | None = None  # strptime format for string timestamps; None = ISO-8601
    timezone: str = "UTC"


class CatalogConfig(Section):
    """An item catalog joined on item id: item -> title, category, brand, price, …"""

    path: str  # the catalog file; relative: to the current directory
    item: str = "item_id"
    fields: dict[str, str] = Field(default_factory=dict)  # canonical field -> raw column
    format: Literal["auto", "csv", "tsv", "parquet", "jsonl"] = "auto"
    delimiter: str | None = None


class SyntheticConfig(Section):
    """The embedded synthetic shop, used when ``data.path`` is not set."""

    users: int = Field(2000, ge=1)
    items: int = Field(500, ge=10)
    categories: int = Field(12, ge=2)
    days: int = Field(60, ge=7)
    start: str = "2024-01-01"
    seed: int = 7

    @model_validator(mode="after")
    def _categories_fit_items(self) -> SyntheticConfig:
        checks.raise_problems(type(self).__name__, checks.synthetic_problems(self))
        return self


class DataConfig(Section):
    """Where events come from and how they are mapped to the canonical table."""

    preset: str | None = None  # a known public format (see evtlm.ingest.presets); fields below override it
    path: str | None = None  # a file, a folder of files or a glob (one log); None: the embedded synthetic shop (see `synthetic`); relative: to the current directory
    options: dict[str, Any] = Field(default_factory=dict)  # preset-specific options
    format: Literal["auto", "csv", "tsv", "parquet", "jsonl"] = "auto"
    delimiter: str | None = None
    encoding: str = "utf-8"  # of CSV/TSV text, e.g. latin-1 for old spreadsheet exports
    has_header: bool = True
    column_names: list[str] | None = None  # names for a header-less file
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    timestamp: TimestampConfig = Field(default_factory=TimestampConfig)
    actions: dict[str, Action] = Field(default_factory=dict)  # raw value -> canonical action
    constant_action: Action | None = None  # a log without an action column (clicks only)
    drop_actions: list[str] = Field(default_factory=list)  # raw values dropped (and counted)
    start: str | None = None  # keep events at or after (ISO); earlier ones are counted, dropped
    end: str | None = None  # keep events before (ISO)
    session_gap_minutes: float = Field(SESSION_GAP_MINUTES, gt=0)
    dedupe: bool = True
    on_bad_rows: Literal["error", "skip"] = "error"
    catalog: CatalogConfig | None = None
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    max_users: int | None = Field(None, ge=1)  # keep a deterministic subset of users
    # a partition folder (`evtlm partition`) as data.path: prepare it shard by shard into tokenized
    # shards, each training process reading only its own (evtlm.data.shard_prepare); false: read it whole
    by_shard: bool = False

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

    actor: str = "User {user_id}"
    verbs: dict[Action, str] = Field(
        default_factory=lambda: {
            "view": "viewed {item}",
            "cart": "added {item} to cart",
            "remove_from_cart": "removed {item} from cart",
            "favorite": "saved {item}",
            "purchase": "bought {item}",
            "return": "returned {item}",
        }
    )
    # how an item is written: id ("Product 1002": item_prefix + id), title (the catalog title),
    # template (item_template over catalog fields), token (<item_1002>: set by model.item_tokens)
    item: Literal["id", "title", "template", "token"] = "id"
    item_prefix: str = "Product"  # `id` mode: "Product 1002"
    item_template: str = "{title}"  # `template` mode, over catalog fields
    time: Literal["none", "absolute", "relative"] = "relative"
    absolute_format: str = "%Y-%m-%d %H:%M"
    timezone: str = "UTC"  # `absolute` times are shown in this zone (e.g. Asia/Shanghai for Taobao)
    session_breaks: bool = True
    session_phrase: str = "New visit"  # opens the first event of each later visit
    repeat_shortcut: bool = True  # "added it to cart" when the item repeats
    # before each later visit, what a tree would count so far: " So far: 12 views, 3 carts,
    # 1 purchase; last purchase 5 days ago." (events strictly before the visit's first event)
    summaries: bool = False
    # what an event was worth, before its full stop where the price is known (evtlm.ingest.money): a
    # template over {price}, {quantity} and {amount} (price x quantity), e.g. " for £{amount:.2f}"
    # or " ({quantity:g} x £{price:.2f})"; null: no money in the text
    amount: str | None = None
    amount_actions: list[Action] = Field(default_factory=lambda: ["cart", "purchase", "return"])  # which events carry it

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

    name: Literal["next_action", "next_item", "purchase", "pretrain"] = "purchase"
    level: Literal["user", "session"] = "user"  # purchase only
    horizon_days: float = Field(7.0, gt=0)  # purchase (user level): buys within H after cutoff
    # purchase (user level): days between training cutoffs, each labelled over its full horizon
    # inside the training window. None: one every horizon_days. Denser cutoffs give every user
    # more labels (the stream formulation reads them all in one pass per window)
    cutoff_every_days: float | None = Field(None, gt=0)
    min_history: int = Field(1, ge=1)  # events a prompt needs at least
    examples_per_user: int | None = Field(None, ge=1)  # cap on training examples per user (latest); valid/test keep all
    target_actions: list[Action] | None = None  # next_*: only these events are targets; None: all
    max_tokens: int = Field(512, ge=16)  # context budget; oldest events are dropped first
    # stream: one forward pass over a window of the user's events supervises every target in it
    # (evtlm.data.stream; next_item, next_action, purchase); example: one prompt per target with a
    # question. auto: stream for next_item (with item tokens) and next_action, example otherwise
    formulation: Literal["auto", "stream", "example"] = "auto"
    # stream evaluation: share of a window kept as context before any target it reads
    stream_min_context: float = Field(0.5, ge=0, lt=1)


class SplitConfig(Section):
    """Leakage-safe splits: global time windows (default) or leave-one-out."""

    method: Literal["time", "leave_one_out"] = "time"
    valid_days: float = Field(7.0, gt=0)
    test_days: float = Field(7.0, gt=0)


# ------------------------------------------------------------------------------ model and lora
class ScratchConfig(Section):
    """Size of the GPT-2 built from scratch when the base cannot be loaded."""

    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    n_embd: int = Field(128, ge=8)
    n_positions: int = Field(512, ge=16)
    vocab_size: int = Field(2048, ge=300)
    pretrain_epochs: float = Field(1.0, ge=0)
    pretrain_max_steps: int | None = Field(None, ge=1)
    pretrain_lr: float = Field(1e-3, gt=0)
    pretrain_block: int = Field(256, ge=8)  # tokens per pretraining row (chunks of whole streams)
    pretrain_batch_size: int = Field(16, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)  # residual and embedding dropout
    # attention-probability dropout; 0 lets CPU attention use its fused kernel (5x faster)
    attn_dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ScratchConfig:
        checks.raise_problems(type(self).__name__, checks.scratch_problems(self))
        return self


class ModelConfig(Section):
    base: str = "gpt2"  # HF hub id, local directory of a causal LM, or a named base (smollm2-135m: make base-smollm2)
    tokenizer: str | None = None  # defaults to `base`
    when_unavailable: Literal["error", "scratch"] = "error"
    scratch: ScratchConfig = Field(default_factory=ScratchConfig)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # one token per catalog item (<item_1002>), the catalog ranked by one product; None: on for
    # next_item unless task.formulation is example
    item_tokens: bool | None = None
    # next_item stream: a learned pointer over the items already in the history, mixed with the
    # catalog distribution (evtlm.train.stream_model); None: on for next_item streams
    copy_path: bool | None = None
    # copy path, training: weight of the catalog head's own NLL added to the mixture's, so it learns
    # every next item and not only those the pointer cannot copy (0: the mixture alone); scoring unchanged
    explore_loss: float = Field(1.0, ge=0)
    # stream: counts and recency of the history read by a small MLP into every answer's logit
    # (next_action: last actions, action counts, a returning item, the last gap, and per target the
    # next_action gbt's own inputs; purchase: the gbt's RFM features as of each cutoff); None: on
    # for next_action and purchase streams
    history_features: bool | None = None
    # purchase and next_action streams: each per-target feature also enters that MLP piecewise-linearly over this many
    # quantile bins of the training targets (evtlm.train.stream_model.piecewise_linear), beside its
    # standardised value: an MLP then bends at the values a tree would split on. 0: the
    # standardised values only. Test ROC-AUC, seeds 0 / 1 / 2: synthetic shop 0 bins 0.841 / 0.835 /
    # 0.838, 8 bins 0.845 / 0.843 / 0.844, 16 bins 0.846 / 0.844 (gbt 0.836)
    feature_bins: int = Field(16, ge=0, le=256)


class LoraConfig(Section):
    enabled: bool = True  # False: full fine-tuning
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    # None: the base architecture's projections (evtlm.train.modeling.lora_targets): GPT-2 c_attn, c_proj,
    # c_fc; Llama q/k/v/o_proj, gate/up/down_proj. The run's resolved recipe records the ones used
    target_modules: list[str] | None = None
    # A scratch base (model.when_unavailable=scratch) is tiny and was pretrained minutes ago:
    # train all its weights. Measured on the synthetic purchase task, LoRA on it learned nothing
    # (test AUC 0.47-0.55) where full fine-tuning reached 0.61 in the same 300 steps.
    full_finetune_scratch: bool = True


# ----------------------------------------------------------------------------------- training
class TrainConfig(Section):
    seed: int = 42
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)  # overrides epochs when set
    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    max_grad_norm: float | None = Field(1.0, gt=0)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    batching: Literal["length_grouped", "packed", "plain"] = "length_grouped"
    eval_every: int = Field(200, ge=1)  # optimizer steps
    save_every: int = Field(200, ge=1)
    early_stopping_patience: int | None = Field(3, ge=1)  # evaluations without improvement
    log_every: int = Field(10, ge=1)
    max_eval_examples: int | None = Field(2000, ge=1)  # cap on valid examples per evaluation
    # stream next_item: softmax over the batch's answers plus this many uniformly drawn items
    # when the label space is larger (training only; evaluation ranks the whole catalog); None: full
    negatives: int | None = Field(None, ge=1)
    # torch CPU threads for the whole run (None: torch's default). Small models gain little from
    # more, and two runs sharing 2 cores at 2 threads each ran 3-5x slower than at 1 thread each
    threads: int | None = Field(None, ge=1)

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `no` as false: `mixed_precision: no` (or `train.mixed_precision=no`)
        # means the "no" setting, not a type error
        return "no" if value is False else value


# ------------------------------------------------------------------------- decode, eval, output
class DecodeConfig(Section):
    method: Literal["auto", "first_token", "sequence", "beam"] = "auto"
    top_k: int = Field(10, ge=1)
    num_beams: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=1)
    exclude_history_items: bool = False
    # auto: score every item exactly up to this catalog size, trie beam search above it
    exhaustive_max_items: int = Field(256, ge=1)
    # score answer + eos (what closed-task training appends), so " Product 100" cannot win
    # over " Product 1002" merely by being a prefix of it: pass end_id=tokenizer.eos_token_id
    score_eos: bool = True


class SasrecConfig(Section):
    """The SASRec baseline (next_item): see `evtlm.evaluate.sasrec` for what these defaults were tuned on."""

    dim: int = Field(64, ge=8)
    max_len: int = Field(50, ge=2)
    blocks: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    lr: float = Field(3e-3, gt=0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(30, ge=1)  # at most; early stopping usually ends sooner
    patience: int = Field(3, ge=1)  # epochs without a better validation NDCG@10
    # sampled softmax (catalogs over full_softmax_items): uniform negatives shared by a batch.
    # 256 -> 1000 -> 2000 on Taobao (54k items): HR@10 0.125 -> 0.130 -> 0.131, CPU 45 -> 62 -> 106 s
    negatives: int = Field(2000, ge=1)
    # catalog size up to which the loss is a full softmax (chunked: memory stays small). Its cost
    # is targets x items per epoch, ~15 ns each on one core: 54k items x 84k targets ~70 s/epoch
    full_softmax_items: int = Field(10_000, ge=1)
    valid_users: float = Field(0.1, gt=0, lt=1)  # share of users whose last training item validates
    # torch CPU threads while fitting/scoring (None: torch's default). 1 by default: a model this
    # small gains little from more, and on a shared machine OpenMP contention made fits 10x slower
    threads: int | None = Field(1, ge=1)
    seed: int = 42

    @model_validator(mode="after")
    def _heads_divide_width(self) -> SasrecConfig:
        checks.raise_problems(type(self).__name__, checks.sasrec_problems(self))
        return self


class GbtConfig(Section):
    """The gradient-boosted trees baseline of purchase, sklearn HistGradientBoostingClassifier."""

    max_iter: int = Field(300, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    max_leaf_nodes: int = Field(31, ge=2)
    l2_regularization: float = Field(1.0, ge=0)
    # OpenMP threads (None: sklearn's default). 1 by default: on 6.5k examples it fit in 0.8 s
    # against 17 s with 2 contended threads; set None for millions of examples on many cores
    threads: int | None = Field(1, ge=1)
    seed: int = 42


class ActionGbtConfig(GbtConfig):
    """The gradient-boosted trees baseline of next_action (multiclass, on the last events' features)."""

    # boosting iterations (early stopping on 10% of training cuts them short); slower, smaller trees
    # than purchase's: on the Taobao next-action split (51k training examples, 3 seeds) 600 x 0.03 with
    # 15 leaves beat 300 x 0.05 with 31 on validation log loss (0.379 vs 0.383)
    max_iter: int = Field(600, ge=1)
    learning_rate: float = Field(0.03, gt=0)  # boosting learning rate
    max_leaf_nodes: int = Field(15, ge=2)  # leaves per tree


class EvalConfig(Section):
    split: Literal["valid", "test"] = "test"
    k: list[int] = Field(default_factory=lambda: [1, 5, 10, 20])
    baselines: list[str] | None = None  # None: every baseline that fits the task
    max_examples: int | None = Field(None, ge=1)  # seeded sample, the same examples for every method
    # training-time task metric (early stopping): validation examples it is computed on, model only
    fit_max_examples: int = Field(500, ge=1)
    ece_bins: int = Field(10, ge=2)
    # purchase: the calibrator fitted on validation (evtlm.evaluate.calibration). auto: the identity,
    # temperature or Platt scaling, whichever has the lowest 5-fold cross-fitted log loss within
    # validation; temperature rescales the logit, platt also shifts it to validation's buy rate
    calibration: Literal["auto", "temperature", "platt"] = "auto"
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
    dir: str = "runs"
    name: str | None = None  # defaults to the recipe file's stem
    overwrite: bool = False


class Recipe(Section):
    """A whole recipe. Every section has defaults; a YAML file overrides what it names."""

    name: str | None = None
    description: str | None = None
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
