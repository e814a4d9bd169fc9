"""What each event is worth: price, quantity and amount (price x quantity), one rule for every stage.

The text (`evtlm.text.verbalize`, ``verbalize.amount``), the gbt baseline's ``spend`` feature and the
stream model's purchase features (`evtlm.data.history.rfm_features`) all read these numbers, so a
model and the trees it is compared with see the same monetary signal.

- ``price``: the event's own ``price`` column; else the catalog's price of its item; NaN where
  neither knows it. None when the log has no price at all (Taobao).
- ``quantity``: the event's ``quantity`` column (NaN read as 1); 1 when the log has none. Returns
  and cancellations keep their sign as the log writes it.
- ``amount``: ``price * quantity`` (NaN where the price is unknown).

>>> ev = pd.DataFrame({"item_id": ["a", "b", "c"], "price": [2.5, None, 1.0], "quantity": [2, 1, None]})
>>> m = event_money(ev, None)
>>> m.amount.tolist()
[5.0, nan, 1.0]
>>> cat = pd.DataFrame({"item_id": ["a", "b"], "price": [3.0, 4.0]})
>>> event_money(ev[["item_id"]], cat).amount.tolist()  # no event prices: the catalog's, quantity 1
[3.0, 4.0, nan]
>>> event_money(ev[["item_id"]], None) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Money", "event_money"]


@dataclass(frozen=True)
class Money:
    """Per event (in the order of the table given): float64 arrays."""

    price: np.ndarray
    quantity: np.ndarray
    has_quantity: bool  # the log had a quantity column (else every quantity is 1)

    @property
    def amount(self) -> np.ndarray:
        return self.price * self.quantity


def event_money(events: pd.DataFrame, catalog: pd.DataFrame | None) -> Money | None:
    """Price, quantity and amount of every event (see the module doc); None without any price."""
    if "price" in events:
        price = pd.to_numeric(events["price"], errors="coerce").to_numpy(np.float64)
    elif catalog is not None and "price" in catalog and "item_id" in catalog:
        prices = pd.to_numeric(catalog.drop_duplicates("item_id").set_index("item_id")["price"], errors="coerce")
        price = events["item_id"].astype("string").map(prices.set_axis(prices.index.astype("string"))).to_numpy(
            np.float64, na_value=np.nan)
    else:
        return None
    has_quantity = "quantity" in events
    if has_quantity:
        quantity = pd.to_numeric(events["quantity"], errors="coerce").to_numpy(np.float64)
        quantity = np.where(np.isnan(quantity), 1.0, quantity)
    else:
        quantity = np.ones(len(events))
    return Money(price, quantity, has_quantity)
