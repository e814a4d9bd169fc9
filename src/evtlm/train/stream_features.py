"""What `StreamLM` reads about a window's events beside the LM's hidden states, as tensors.

Owns the next_action history features (`history_features`: what a tree would read at each read
position), the copy path's pair features of every history event (``phi``, `_pair_features`), the
items seen before each target (``exclude_history`` scoring), and the piecewise-linear encoding of
the per-target features over quantile bins (`quantile_edges`, `piecewise_linear`). Everything is
read from events strictly before the target. Pure functions with no weights of their own: must not
hold parameters, run the LM or compute a loss (`evtlm.train.stream_model`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from evtlm.recipe import ACTIONS
from evtlm.timeunits import SECONDS_PER_DAY

N_FEATURES = 9  # phi without the action one-hot: see _pair_features


N_HISTORY_FEATURES = 4 * len(ACTIONS) + 5


MIN_BIN_WIDTH = 1e-4  # tied quantiles (a count that is mostly 0) become steps this narrow


def quantile_edges(x, bins: int):
    """[F, bins + 1] strictly increasing bin edges per column of ``x`` [n, F]: its quantiles at
    0, 1/bins, ..., 1, each at least `MIN_BIN_WIDTH` above the one before.

    >>> quantile_edges(np.array([[0.0], [0.0], [0.0], [1.0], [3.0]]), 2).round(4).tolist()
    [[0.0, 0.0001, 3.0]]
    """
    q = np.quantile(np.asarray(x, dtype=np.float64), np.linspace(0.0, 1.0, bins + 1), axis=0).T
    for t in range(1, q.shape[1]):  # bins + 1 columns, not one per row
        q[:, t] = np.maximum(q[:, t], q[:, t - 1] + MIN_BIN_WIDTH)
    return q


def piecewise_linear(x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear encoding of numeric features (Gorishniy et al., "On Embeddings for
    Numerical Features in Tabular Deep Learning", 2022): ``x`` [N, F] and ``edges`` [F, B + 1]
    give [N, F * B], where bin ``t`` of a value reads 0 below the bin, 1 above it and the
    fraction covered inside it. A linear layer over it is any piecewise-linear function of each
    feature with knots at the edges, so thresholds cost the MLP one weight each.

    >>> piecewise_linear(torch.tensor([[0.5], [2.5], [9.0]]), torch.tensor([[0.0, 1.0, 2.0, 4.0]])).tolist()
    [[0.5, 0.0, 0.0], [1.0, 1.0, 0.25], [1.0, 1.0, 1.0]]
    """
    lo, hi = edges[:, :-1], edges[:, 1:]
    return ((x[..., None] - lo) / (hi - lo)).clamp(0.0, 1.0).flatten(-2)


def history_features(ev_item, ev_action, ev_time, tgt_local, real) -> torch.Tensor:
    """[N, N_HISTORY_FEATURES] what a tree would read at each real target's read position: the
    last two actions (one-hot), the counts of each action before the target and among the last
    10 events (log), how often the last event's item occurred and was acted on beyond a view,
    the gap between the last two events (log minutes), and how much history there is.

    Everything is from events strictly before the target (``j < tgt_local``): no peeking.
    """
    A = len(ACTIONS)
    rows = torch.nonzero(real)[:, 0]
    local = tgt_local[real]  # [N]
    E = ev_action.shape[1]
    j = torch.arange(E, device=ev_action.device)[None, :]
    before = j < local[:, None]  # [N, E]
    act, item, time = ev_action[rows].clamp(min=0), ev_item[rows], ev_time[rows].float()
    last, prev = (local - 1).clamp(min=0), (local - 2).clamp(min=0)
    has1, has2 = (local > 0).float(), (local > 1).float()
    onehot = F.one_hot(act.long(), A).float()  # [N, E, A]
    last_act = onehot.gather(1, last[:, None, None].expand(-1, 1, A)).squeeze(1) * has1[:, None]
    prev_act = onehot.gather(1, prev[:, None, None].expand(-1, 1, A)).squeeze(1) * has2[:, None]
    counts = (onehot * before[..., None]).sum(1)
    recent = (onehot * (before & (j >= local[:, None] - 10))[..., None]).sum(1)
    last_item = item.gather(1, last[:, None])
    same = before & (item == last_item) & (item >= 0)
    acted = same & (act != 0)  # ACTIONS[0] is "view"
    gap = (time.gather(1, last[:, None]) - time.gather(1, prev[:, None])).squeeze(1).clamp(min=0) * has2
    return torch.cat([last_act, prev_act, torch.log1p(counts), torch.log1p(recent),
                      torch.log1p(same.sum(1, keepdim=True).float()), torch.log1p(acted.sum(1, keepdim=True).float()),
                      (torch.log1p(gap / 60.0) / 4)[:, None], torch.log1p(local.float())[:, None] / 4, has2[:, None]], dim=1)


def _pair_features(action_emb: nn.Embedding, ev_item, ev_action, ev_time, ev_cat, tgt_local) -> torch.Tensor:
    """phi [B, T, E, N_FEATURES + 8]: what is known about history event j at target t's read position."""
    B, E = ev_item.shape
    T = tgt_local.shape[1]
    last = (tgt_local - 1).clamp(min=0)  # [B, T] the event the answer is read after
    b_idx = torch.arange(B, device=ev_item.device)[:, None]
    j = torch.arange(E, device=ev_item.device)[None, None, :]
    ago = (last[:, :, None] - j).clamp(min=0).float()  # events ago (0 = the last event)
    t_last = ev_time[b_idx, last].float()  # [B, T]
    dt = (t_last[:, :, None] - ev_time[:, None, :].float()).clamp(min=0)  # seconds ago
    item_last = ev_item[b_idx, last]
    cat_last = ev_cat[b_idx, last]
    same_item = (ev_item[:, None, :] == item_last[:, :, None]).float()
    same_cat = ((ev_cat[:, None, :] == cat_last[:, :, None]) & (ev_cat[:, None, :] >= 0)).float()
    is_last = (ago == 0).float()
    # the item's whole history before t, at each of its occurrences: how often it occurred, how
    # often beyond a view (cart, favourite, purchase), and whether j is its latest occurrence
    same = ((ev_item[:, :, None] == ev_item[:, None, :]) & (ev_item[:, :, None] >= 0)).float()  # [B, E(k), E(j)]
    before = (j < tgt_local[:, :, None]).float()  # [B, T, E(k)] events k before target t
    count = before @ same  # [B, T, E(j)]
    acted = (before * (ev_action != 0)[:, None, :].float()) @ same  # ACTIONS[0] is "view"
    idx = torch.arange(E, device=ev_item.device)
    after_j = (idx[:, None] > idx[None, :]).float()  # [E(k), E(j)]: k later than j
    later = before @ (same * after_j)  # occurrences of the same item after j (and before t)
    feats = torch.stack([torch.log1p(ago), torch.log1p(dt / 60.0) / 4, same_item, same_cat, is_last,
                         torch.log1p(dt / SECONDS_PER_DAY), torch.log1p(count), torch.log1p(acted), (later == 0).float()],
                        dim=-1)  # [B, T, E, N_FEATURES]
    act = action_emb(ev_action.clamp(min=0, max=action_emb.num_embeddings - 1).long())  # [B, E, 8]
    return torch.cat([feats, act[:, None, :, :].expand(B, T, E, act.shape[-1])], dim=-1)


def _seen_items(ev_item, tgt_local, real, C: int) -> torch.Tensor:
    """[N, C] True for label-space items among the events before each real target."""
    E = ev_item.shape[1]
    rows = torch.nonzero(real)[:, 0]
    before = (torch.arange(E, device=ev_item.device)[None, :] < tgt_local[real][:, None]).float()  # [N, E]
    items = ev_item[rows]
    seen = torch.zeros(len(rows), C + 1, device=ev_item.device)
    seen.scatter_add_(1, torch.where(items >= 0, items, torch.full_like(items, C)).long(), before)
    return seen[:, :C] > 0
