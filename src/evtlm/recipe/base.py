"""The recipe's foundation: the canonical action vocabulary, the session gap default and
`Section`, the base of every section (frozen, unknown keys rejected). Imports nothing of evtlm
but the errors; every other recipe module builds on it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

# The canonical action vocabulary. Readers map raw values (`pv`, `addtocart`, `transaction`) to
# these; the order is the category order of the canonical `action` column.
ACTIONS: tuple[str, ...] = ("view", "cart", "remove_from_cart", "favorite", "purchase", "return")
SESSION_GAP_MINUTES = 30.0  # a longer pause starts a new visit, where a log has no session ids (data.session_gap_minutes)
Action = Literal["view", "cart", "remove_from_cart", "favorite", "purchase", "return"]


class Section(BaseModel):
    """Base of every recipe section: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)
