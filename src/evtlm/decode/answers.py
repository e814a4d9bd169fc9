"""next_item answers as every method is judged by them: the rendered item, not the raw item id.

The model answers with rendered items (" Product 1002", or a title under ``verbalize.item:
title``), so two item ids that render alike — two stock codes with one title — are one answer
to it: it cannot tell them apart in its prompt, and naming either is the same answer. The
baselines rank item ids. To judge every method by the same rule, `answer_index` maps every
known item id to the position of its answer in the label space, and `as_answers` gives the
baselines the events and training targets with each id replaced by its answer's item id (the
one `evtlm.decode.inference.label_item_ids` names): an id sharing a title is the same item for them
too, in the history they read, in the targets they learn and in the rankings they return.
Under ``verbalize.item: id`` every answer has one id and nothing changes.

>>> from evtlm.recipe import VerbalizeConfig
>>> ev = pd.DataFrame({"item_id": pd.array(["A", "B", "C"], dtype="string")})
>>> cat = pd.DataFrame({"item_id": ["A", "B", "C"], "title": ["LANTERN", "LANTERN", "MUG"]})
>>> answer_index([" LANTERN", " MUG"], ev, cat, VerbalizeConfig(item="title"))
{'A': 0, 'B': 0, 'C': 1}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from evtlm.ingest.events import EventLog
from evtlm.recipe import VerbalizeConfig

__all__ = ["answer_index", "as_answers"]


def answer_index(label_space: Sequence[str], events: pd.DataFrame, catalog: pd.DataFrame | None,
                 cfg: VerbalizeConfig) -> dict[str, int]:
    """Every item id of ``events`` and ``catalog`` -> the position of its rendered answer in
    ``label_space`` (ids rendering to an answer outside it are left out)."""
    from evtlm.text.verbalize import render_items

    ids = pd.Series(events["item_id"].dropna().unique(), dtype="string")
    if catalog is not None and "item_id" in catalog:
        ids = pd.Series(pd.unique(pd.concat([ids, catalog["item_id"].astype("string")]).to_numpy(dtype=object)), dtype="string")
    rendered = (" " + render_items(ids, catalog, cfg).astype(str)).to_numpy(dtype=object)
    pos = pd.Index(list(label_space), dtype=object).get_indexer(rendered)
    return {str(i): int(p) for i, p in zip(ids.to_numpy(dtype=object), pos) if p >= 0}


def as_answers(log: EventLog, examples: pd.DataFrame, answers: dict[str, int],
               item_ids: Sequence[str | None]) -> tuple[EventLog, pd.DataFrame]:
    """``log`` and ``examples`` (their ``label`` column) with every item id replaced by the item
    id of its answer, ``item_ids[answers[id]]``; unchanged (not copied) when no id has a twin."""
    alias = {i: item_ids[p] for i, p in answers.items() if item_ids[p] is not None and item_ids[p] != i}
    if not alias:
        return log, examples
    events = log.events.assign(item_id=_renamed(log.events["item_id"], alias))
    return replace(log, events=events), examples.assign(label=_renamed(examples["label"], alias))


def _renamed(values: pd.Series, alias: dict[str, str]) -> pd.Series:
    """``values`` with the ids in ``alias`` renamed; each distinct value is looked up once."""
    codes, uniques = pd.factorize(values.astype("string"))
    renamed = np.array([alias.get(u, u) for u in uniques], dtype=object)
    out = np.where(codes >= 0, renamed[np.maximum(codes, 0)] if len(renamed) else None, None)
    return pd.Series(pd.array(out, dtype="string"), index=values.index)
