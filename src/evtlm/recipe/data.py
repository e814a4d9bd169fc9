"""The ``data`` section: where events come from and how raw columns map to the canonical table
(columns, timestamps, the catalog, the synthetic shop). Declares settings; reading them is
`evtlm.ingest`'s."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from evtlm.recipe import checks
from evtlm.recipe.base import SESSION_GAP_MINUTES, Action, Section


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
