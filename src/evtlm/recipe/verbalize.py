"""The ``verbalize`` section: how events become text (`evtlm.text.verbalize` reads it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from evtlm.recipe import checks
from evtlm.recipe.base import Action, Section


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
