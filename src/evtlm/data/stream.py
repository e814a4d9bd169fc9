"""Stream formulation: one forward pass over a window of a user's verbalized events supervises
every target event inside it (the way SASRec and HSTU train), instead of one prompt per target.

**Layout and the no-peeking rule.** A window is the actor text followed by a contiguous run of
the user's event pieces, exactly as `evtlm.text.encode` lays a history out. The answer for event
``t`` is *read* at the last token of event ``t - 1`` (the actor's last token for the first event
of a window)::

    User 7 | viewed <item_3>. | 5 minutes later added <item_3> to cart. | New visit 2 days later: viewed <item_9>.
         ^ read for event 0   ^ read for event 1                        ^ read for event 2      ^ read after the last
                                                                                                  event (prediction)

Everything event ``t`` adds (its "New visit" break, its time gap, its verb, its item) comes
*after* that position, and attention is causal, so nothing known only at or after event ``t``
can reach the hidden state its answer is read from. The answer itself is a restricted softmax
over the label space read there: the item tokens (next_item, one token per item with tied
embeddings, so the catalog is scored by one product) or each action answer's first token
(next_action). Prediction and evaluation read the same position after the user's last event.

**Windows.** Long histories are cut into windows of at most ``task.max_tokens`` tokens, aligned
to the *end* of the history so the latest events always have context. Training targets are
partitioned between windows (every target supervised once per epoch). Evaluation windows keep
at least ``min_context`` of the window as context for every target they read (a target near the
start of a window gets its own, earlier window), so held-out answers are judged with a full
history, as the per-example prompts were.

Dataset rows (one per window; ragged int32 lists):

=============  ===========================================================================
input_ids      actor + event pieces
ev_end         [E] position of each event's last token (its read position for the next event)
ev_pos         [E] position of the event's item token (its last token when the item is not one token)
ev_item        [E] label-space index of the event's item (-1: none or outside the label space);
               next_action: a code of the item (its identity, for history features)
ev_action      [E] action code (index into `evtlm.recipe.ACTIONS`)
ev_time        [E] seconds since the window's first event
ev_cat         [E] category code of the item (-1: unknown)
tgt_local      [T] which event of the window each target is (E for "after the last event")
tgt_read       [T] position its answer is read at
tgt_label      [T] label-space index of the answer (-1: outside it, e.g. a cold item)
tgt_example    [T] row of the split's example table (`Prepared.index`) the target answers
tgt_feat       [T x F] (purchase and next_action with ``model.history_features``) what a tree
               reads at each target (`target_features`: purchase as of its cutoff,
               next_action strictly before the target event), flattened target-major
=============  ===========================================================================

**Purchase streams.** A target is a ``(user, cutoff)`` pair, read after the last event before
the cutoff. Several cutoffs can share one read position (a user idle for days), so what only the
cutoff knows (how long ago the last event, cart and purchase were; the counts of the last 1, 3
and 7 days) travels as ``tgt_feat``: the same recency / frequency / monetary features the gbt
baseline reads (`evtlm.data.history.rfm_features`), computed over the user's whole history strictly
before the cutoff, log-scaled, with a flag per "never".

This module owns the window rows' layout and their assembly (`stream_table`; `stream_splits` for
training, `now_windows` for prediction). Where windows fall (`evtlm.data.stream_windows`, whose
doc shows an example) and the per-target features (`evtlm.data.stream_features`) live beside it and
are re-exported here. It must not import a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from evtlm.data.stream_features import (ACTION_FEATURES, N_ACTION_FEATURES, N_PURCHASE_FEATURES, PURCHASE_FEATURES, action_features,
                                        purchase_features, target_feature_width, target_features)
from evtlm.data.stream_windows import Windows, plan_windows
from evtlm.text.encode import EventTokens, gather_ranges
from evtlm.recipe import ACTIONS

__all__ = ["STREAM_COLUMNS", "PURCHASE_FEATURES", "N_PURCHASE_FEATURES", "purchase_features", "ACTION_FEATURES",
           "N_ACTION_FEATURES", "action_features", "target_features", "target_feature_width", "Windows", "plan_windows", "event_attributes", "stream_table", "stream_splits",
           "now_windows", "is_stream_dataset"]

EVENT_COLUMNS = ("ev_end", "ev_pos", "ev_item", "ev_action", "ev_time", "ev_cat")
TARGET_COLUMNS = ("tgt_local", "tgt_read", "tgt_label", "tgt_example")
FEATURE_COLUMN = "tgt_feat"  # per-target features (purchase), flattened [T * F]
STREAM_COLUMNS = ("input_ids", *EVENT_COLUMNS, *TARGET_COLUMNS, FEATURE_COLUMN)


def is_stream_dataset(ds) -> bool:
    """True for a dataset of stream windows (it has read positions)."""
    return "tgt_read" in getattr(ds, "column_names", ())


def event_attributes(events: pd.DataFrame, catalog: pd.DataFrame | None, item_label: np.ndarray) -> dict[str, np.ndarray]:
    """Per event: item label index, action code, time (s since the epoch) and category code.

    ``item_label[i]`` is event i's item in the label space (-1 when it has none). The category
    comes from the events' own ``category`` column (Taobao) or else the catalog.
    """
    action = pd.Categorical(events["action"].astype(str), categories=list(ACTIONS)).codes.astype(np.int32)
    ts = events["timestamp"].to_numpy(dtype="datetime64[ns]").view(np.int64) // 1_000_000_000
    cat = None
    if "category" in events.columns:
        cat = events["category"]
    elif catalog is not None and "category" in catalog.columns:
        cat = events["item_id"].map(catalog.drop_duplicates("item_id").set_index("item_id")["category"])
    codes = np.full(len(events), -1, np.int32) if cat is None else pd.factorize(cat, use_na_sentinel=True)[0].astype(np.int32)
    return {"item": np.asarray(item_label, np.int32), "action": action, "time": ts, "cat": codes}


def _ragged(values: np.ndarray, offsets: np.ndarray) -> pa.Array:
    from evtlm.text.encode import list_array

    return list_array(np.ascontiguousarray(values, dtype=np.int32), offsets)


def item_token_mask(tokenizer) -> np.ndarray:
    """[vocab] True for the ``<item_…>`` tokens (`evtlm.text.tokenization.item_token_ids`)."""
    from evtlm.text.tokenization import item_token_ids

    mask = np.zeros(len(tokenizer), dtype=bool)
    mask[item_token_ids(tokenizer)] = True
    return mask


def stream_table(tok: EventTokens, win: Windows, attrs: dict[str, np.ndarray], tgt_pos: np.ndarray,
                 tgt_label: np.ndarray, tgt_example: np.ndarray, is_item_token: np.ndarray | None = None,
                 tgt_feat: np.ndarray | None = None) -> tuple[pa.Table, np.ndarray]:
    """The Arrow table of windows (columns in the module doc) and each target's context tokens.

    ``is_item_token`` ([vocab] bool) locates each event's item token (``ev_pos``): the read-out
    adds the hidden state there to the read position's, so the item just seen is one residual
    stream away, as in SASRec, instead of a learned attention hop from the full stop after it.
    """
    n_win = len(win.start)
    # ---- tokens: actor | pieces[start:stop]
    a_start, a_len = tok.actor_start[win.user], tok.actor_len[win.user]
    p_start = tok.piece_cum[win.start]
    p_len = tok.piece_cum[win.stop] - p_start
    starts = np.stack([a_start, p_start], axis=1)
    lens = np.stack([a_len, p_len], axis=1)
    flat = gather_ranges(tok.pool, starts, lens)
    tok_off = np.concatenate([[0], np.cumsum(lens.sum(axis=1))]).astype(np.int64)
    # ---- events of each window, in order
    n_ev = win.stop - win.start
    ev_off = np.concatenate([[0], np.cumsum(n_ev)]).astype(np.int64)
    ev_row = np.repeat(win.start - ev_off[:-1], n_ev) + np.arange(int(ev_off[-1]))  # event row of each slot
    ev_win = np.repeat(np.arange(n_win), n_ev)
    ev_end = a_len[ev_win] + tok.piece_cum[ev_row + 1] - p_start[ev_win] - 1
    ev_pos = ev_end.copy()
    if is_item_token is not None and len(ev_row):
        local = np.arange(len(flat), dtype=np.int64) - np.repeat(tok_off[:-1], np.diff(tok_off))
        marked = np.where(is_item_token[flat], local, -1)
        ev_first = tok_off[ev_win] + a_len[ev_win] + tok.piece_cum[ev_row] - p_start[ev_win]  # flat, increasing
        last_item = np.maximum.reduceat(marked, ev_first)  # per event (a window's next actor has no item token)
        ev_pos = np.where(last_item >= 0, last_item, ev_end)
    t0 = attrs["time"][win.start] if n_win else np.zeros(0, np.int64)
    ev_time = attrs["time"][ev_row] - t0[ev_win]
    # ---- targets, grouped by window
    order = np.argsort(win.of_target, kind="stable")
    t_win = win.of_target[order]
    t_pos = tgt_pos[order]
    t_local = t_pos - win.start[t_win]
    prev = ev_off[t_win] + t_local - 1  # slot of the event before the target
    t_read = np.where(t_local > 0, ev_end[np.maximum(prev, 0)], a_len[t_win] - 1)
    t_off = np.concatenate([[0], np.cumsum(np.bincount(t_win, minlength=n_win))]).astype(np.int64)
    columns = {
        "input_ids": _ragged(flat, tok_off),
        "ev_end": _ragged(ev_end, ev_off), "ev_pos": _ragged(ev_pos, ev_off), "ev_item": _ragged(attrs["item"][ev_row], ev_off),
        "ev_action": _ragged(attrs["action"][ev_row], ev_off), "ev_time": _ragged(ev_time, ev_off),
        "ev_cat": _ragged(attrs["cat"][ev_row], ev_off),
        "tgt_local": _ragged(t_local, t_off), "tgt_read": _ragged(t_read, t_off),
        "tgt_label": _ragged(np.asarray(tgt_label)[order], t_off), "tgt_example": _ragged(np.asarray(tgt_example)[order], t_off),
        "n_targets": pa.array(np.diff(t_off).astype(np.int32)),
    }
    if tgt_feat is not None:  # [n_targets, F] -> per window, target-major
        F = tgt_feat.shape[1]
        columns[FEATURE_COLUMN] = pa.LargeListArray.from_arrays(pa.array(t_off * F, pa.int64()),
                                                                pa.array(np.asarray(tgt_feat, np.float32)[order].ravel()))
    context = np.empty(len(tgt_pos), np.int64)
    context[order] = t_read + 1
    return pa.table(columns), context


def stream_splits(tok: EventTokens, table: pd.DataFrame, ctx, log, label_space: list[str], recipe, tokenizer,
                  first_example_id: int = 0):
    """Per split code, the Arrow table of stream windows; per example of ``table`` (the task's
    example table, all splits), the first event of its window and the tokens before its read
    position. Training windows read every target once; held-out ones keep
    ``task.stream_min_context`` of a window before each target. ``tgt_example`` is the row of
    ``table`` plus ``first_example_id`` (a shard's examples numbered on from the earlier shards')."""
    from evtlm.tasks.splits import SPLITS, TRAIN

    item_label = event_items(log.events, log.catalog, recipe, label_space)
    attrs = event_attributes(log.events, log.catalog, item_label)
    users = pd.Index(ctx.index.user_ids)[table["user_code"].to_numpy()]
    feats = target_features(recipe, log, users, table["label_time"].to_numpy())
    kept = np.zeros(len(table), np.int64)
    context = np.zeros(len(table), np.int64)
    tables = {}
    for code in range(len(SPLITS)):
        rows = np.flatnonzero(table["split"].to_numpy() == code)
        part = table.iloc[rows]
        stop = part["hist_stop"].to_numpy()
        order = np.argsort(stop, kind="stable")  # windows are planned along the event rows
        rows, part, stop = rows[order], part.iloc[order], stop[order]
        min_context = 0.0 if code == TRAIN else recipe.task.stream_min_context
        win = plan_windows(tok.piece_cum, ctx.index.user_start, ctx.index.user_stop, tok.actor_len,
                           part["user_code"].to_numpy(), stop, recipe.task.max_tokens, min_context)
        tables[code], context[rows] = stream_table(tok, win, attrs, stop, part["label_index"].to_numpy(), rows + first_example_id,
                                                   item_token_mask(tokenizer), None if feats is None else feats[rows])
        kept[rows] = win.start[win.of_target]
    return tables, kept, context


def item_labels(events: pd.DataFrame, catalog: pd.DataFrame | None, verbalize, label_space: list[str]) -> np.ndarray:
    """Each event's item as a label-space index (-1: no item, or one outside the label space)."""
    from evtlm.text.verbalize import render_items

    out = np.full(len(events), -1, np.int64)
    items = events["item_id"]
    has = items.notna().to_numpy()
    if has.any():
        distinct = pd.Series(pd.unique(items[has].astype(str)), dtype="string")
        rendered = " " + pd.Series(render_items(distinct, catalog, verbalize)).astype(str)
        code = pd.Index(label_space).get_indexer(pd.Index(rendered.to_numpy(dtype=object)))
        out[has] = code[pd.Index(distinct.to_numpy(dtype=object)).get_indexer(items[has].astype(str).to_numpy(dtype=object))]
    return out


def event_items(events: pd.DataFrame, catalog: pd.DataFrame | None, recipe, label_space: list[str]) -> np.ndarray:
    """``ev_item`` of every event: its label-space index for next_item (`item_labels`), else a
    code of the item (next_action: its identity only, for history features); -1 without one.
    Training windows and prediction windows both come through here."""
    if recipe.task.name == "next_item":
        return item_labels(events, catalog, recipe.verbalize, label_space)
    return pd.factorize(events["item_id"], use_na_sentinel=True)[0].astype(np.int64)


@dataclass
class NowWindows:
    """Prediction windows: one per user with enough history, read after their last event."""

    user_ids: list[str]  # every user of the events, in table order
    dataset: object  # datasets.Dataset of stream windows; tgt_example = position in user_ids
    ok: np.ndarray  # positions (in user_ids) that have a window
    errors: dict[int, str]


def now_windows(events: pd.DataFrame, catalog: pd.DataFrame | None, recipe, tokenizer, label_space: list[str],
                cutoff_ns: int | None = None) -> NowWindows:
    """Windows of the last ``task.max_tokens`` tokens of every user's history, each with one target
    after the last event: exactly the read position training used (module doc). Per-target
    features (`target_features`) are read as of ``cutoff_ns`` (default: just after the last event)."""
    from datasets import Dataset
    from datasets.table import InMemoryTable

    from evtlm.text.encode import build_event_tokens
    from evtlm.tasks.splits import EventIndex
    from evtlm.text.verbalize import actor_text, verbalize_events

    events = events.reset_index(drop=True)
    index = EventIndex.from_events(events)
    users = [str(u) for u in index.user_ids]
    counts = index.user_stop - index.user_start
    need = recipe.task.min_history
    errors = {int(u): f"{int(counts[u])} usable events; the task needs at least {need} (task.min_history)"
              for u in np.flatnonzero(counts < need)}
    ok = np.flatnonzero(counts >= need)
    text = verbalize_events(events, catalog, recipe.verbalize)
    actors = actor_text(pd.Series(index.user_ids, dtype="string"), recipe.verbalize)
    tok = build_event_tokens(tokenizer, text.piece, text.standalone, actors, pd.Series([""]), pd.Series([""]))
    attrs = event_attributes(events, catalog, event_items(events, catalog, recipe, label_space))
    win = plan_windows(tok.piece_cum, index.user_start, index.user_stop, tok.actor_len, ok, index.user_stop[ok],
                       recipe.task.max_tokens, 0.0)
    if cutoff_ns is None:  # after every event (next_action reads them all; purchase measures from now)
        cutoff_ns = int(index.ts.max()) + 1 if len(events) else 0
    feats = target_features(recipe, events, [users[u] for u in ok], np.full(len(ok), cutoff_ns, np.int64), catalog)
    table, _ = stream_table(tok, win, attrs, index.user_stop[ok], np.full(len(ok), -1), ok, item_token_mask(tokenizer), feats)
    return NowWindows(users, Dataset(InMemoryTable(table)), ok, errors)
