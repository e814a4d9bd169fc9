"""`StreamLM`: a causal LM that answers every target of a stream window in one forward pass.

The LM reads the verbalized window (`evtlm.data.stream`); at each target's read position its final
hidden state, plus the one at the previous event's item token (the item just seen, one residual
stream away, as in SASRec), makes the read vector ``h_t``, which scores the label space through
the LM's own (tied) token embeddings::

    explore logits [T, C] = h_t @ E[answer tokens]^T + b        (E: the input embedding rows)

For next_item the answer tokens are the ``<item_…>`` tokens, so the whole catalog is ranked by
one product, restricted to the label space by construction. For next_action they are each
action answer's first token.

**Copy path** (``model.copy_path``, next_item). Repeats are most of the signal in many shops, so a
RepeatNet-style pointer mixes a distribution over the items already in the window with the
explore distribution::

    s[t, j]  = (Wq h_t) . (Wk h_j) / sqrt(d) + mlp(phi[t, j])    for events j before target t
    p_repeat = softmax_j(s) summed per item                       (repeated items add up: counts)
    p        = g_t * p_repeat + (1 - g_t) * softmax(explore),     g_t = sigmoid(w . [h_t, psi_t])

``h_j`` is the hidden state at event j's last token plus its item token's, and ``phi`` holds
what a tree would read about that occurrence, all known at the read position: how many events
and how long ago it was (log-scaled), its action, whether it is the item or the category of the
last event, how often the item occurred before t and how often beyond a view, and whether j is
its latest occurrence. ``psi_t`` says how much history there is. The gate and the scores are
learned: this is the model, not a blend with a baseline.

Trained on the mixture alone, the explore head learns little from a repeated answer (the gate
and the pointer take the credit for it), so it ranks new items worse than a SASRec fed the same
events. Training therefore adds the explore distribution's own NLL, weighted by
``explore_loss`` (1 by default; 0: the mixture alone), to the mixture's: the catalog head learns
every next item as SASRec's does, and the mixture adds the repeats on top. Scoring and the
validation loss are the mixture's alone. Measured on validation, one seed each: YOOCHOOSE
sessions (HR@20 / MRR@20, dropout 0.35) mixture alone 0.645 / 0.335, copy path off 0.658 /
0.334, with the explore NLL 0.663 / 0.341 (SASRec 0.670 / 0.342); Online Retail (HR@10 /
NDCG@10) 0.184 / 0.105 and 0.183 / 0.105, Taobao (NDCG@10) 0.120 and 0.119: ties there (on
test Online Retail lost, 0.244 / 0.157 -> 0.235 / 0.152, and Taobao gained, 0.151 -> 0.155).

**History features** (``model.history_features``). next_action: `history_features` reads the
counts and recency a tree would (last actions, action counts, a returning item, the last gap)
and a small MLP adds a learned bias to every answer's logit; each target also carries the
next_action gbt's own inputs (``tgt_feat``, `evtlm.data.stream.action_features`) into a second MLP,
as purchase does below. purchase: the window carries each
cutoff's recency / frequency / monetary features (``tgt_feat``, `evtlm.data.stream.purchase_features`,
the gbt baseline's own) and an MLP over them adds to the " no" / " yes" logits: the cutoff's
clock, which the text at the read position cannot know, reaches the answer this way. The MLP
reads each feature standardised and, with ``model.feature_bins`` (16 by default), also
piecewise-linearly over quantile bins of the training cutoffs (`piecewise_linear`): the kinks a
tree would split on ("a cart in the last day", "no purchase for a month") cost it one weight
each. Test ROC-AUC on the synthetic shop, seeds 0 / 1 / 2: standardised only 0.841 / 0.835 /
0.838, with 8 bins 0.845 / 0.843 / 0.844 (the gbt 0.836 on the same examples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers.utils import ModelOutput

from evtlm.recipe import ACTIONS

__all__ = ["StreamLM", "StreamOutput", "StreamCollator", "HEAD_FILE", "answer_token_ids", "stream_predictions",
           "quantile_edges", "piecewise_linear"]

HEAD_FILE = "stream_head.safetensors"
N_FEATURES = 9  # phi without the action one-hot: see _pair_features


def answer_token_ids(tokenizer, label_space: list[str]) -> list[int]:
    """The token each answer is scored by: its first token (the whole answer for an item token).

    First tokens must differ, as for one-pass decoding (`evtlm.tasks.base.require_distinct_first_tokens`).
    """
    ids = [row[0] for row in tokenizer(list(label_space), add_special_tokens=False)["input_ids"]]
    if len(set(ids)) != len(ids):
        from evtlm.errors import TaskError

        raise TaskError("two answers of the label space start with the same token", where="the label space",
                        fix="use model.item_tokens (items) or distinct verb phrases (verbalize.verbs)")
    return ids


@dataclass
class StreamOutput(ModelOutput):
    loss: torch.Tensor | None = None
    n_targets: torch.Tensor | None = None
    log_probs: torch.Tensor | None = None  # [B, T, C] when asked for (scoring)


class StreamLM(nn.Module):
    """Wraps a causal LM (plain or peft) with the stream read-out and, optionally, the copy path."""

    is_stream = True

    def __init__(self, lm: nn.Module, answer_token_ids: list[int], copy: bool = False, negatives: int | None = None,
                 features: bool = False, target_features: int = 0, explore_loss: float = 1.0,
                 feature_bins: int = 0) -> None:
        super().__init__()
        self.lm = lm
        self.explore_loss = float(explore_loss)  # copy path, training: weight of the explore head's own NLL
        self.negatives = negatives  # training: sampled softmax over this many items plus the batch's answers
        self.features = features
        self.target_features = int(target_features)  # width of tgt_feat (purchase); 0: none
        self.feature_bins = int(feature_bins) if self.target_features else 0  # piecewise-linear bins per feature
        self.register_buffer("answer_ids", torch.tensor(answer_token_ids, dtype=torch.long), persistent=False)
        self.answer_bias = nn.Parameter(torch.zeros(len(answer_token_ids)))
        self.copy = copy
        d = self._hidden_size()
        if copy:
            self.query = nn.Linear(d, d)
            self.key = nn.Linear(d, d)
            self.action_emb = nn.Embedding(len(ACTIONS) + 1, 8)
            self.pair_mlp = nn.Sequential(nn.Linear(N_FEATURES + 8, 32), nn.GELU(), nn.Linear(32, 1))
            self.gate = nn.Linear(d + 2, 1)
        if features:  # history features -> a learned bias on every answer (next_action)
            self.feature_mlp = nn.Sequential(nn.Linear(N_HISTORY_FEATURES, 32), nn.GELU(), nn.Linear(32, len(answer_token_ids)))
        if self.target_features:  # per-target features of the cutoff (purchase) -> a learned bias
            # standardised with the training targets' statistics (`fit_feature_scale`): counts and
            # hours on a log scale still span 0-9 with very different spreads per column
            self.register_buffer("feat_mean", torch.zeros(self.target_features))
            self.register_buffer("feat_std", torch.ones(self.target_features))
            # and piecewise-linear over quantile bins (`piecewise_linear`): an MLP on standardised
            # values alone fits smooth curves where the gbt's trees find thresholds
            if self.feature_bins:  # until fitted: unit bins, so the encoding is defined
                self.register_buffer("feat_edges", torch.arange(self.feature_bins + 1.0).repeat(self.target_features, 1))
            width = self.target_features * (1 + self.feature_bins)
            self.target_mlp = nn.Sequential(nn.Linear(width, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(),
                                            nn.Linear(64, len(answer_token_ids)))

    FEATURE_SCALE_WINDOWS = 20_000  # more windows than this: a seeded sample of them sets the scale

    def fit_feature_scale(self, dataset) -> None:
        """Set the per-target feature standardisation from a stream dataset's ``tgt_feat`` (the
        training split's: validation and test are scaled with the same numbers). Over
        `FEATURE_SCALE_WINDOWS` windows (a log of millions of users), a seeded sample of that
        many windows: the scale of 100M events is read from a few hundred MB, not all of it."""
        import numpy as np
        import pyarrow as pa

        if not self.target_features or "tgt_feat" not in getattr(dataset, "column_names", ()):
            return
        table = dataset.data.table if hasattr(dataset.data, "table") else dataset.data
        column = table.column("tgt_feat")
        if len(dataset) > self.FEATURE_SCALE_WINDOWS:
            rows = np.sort(np.random.default_rng(0).choice(len(dataset), self.FEATURE_SCALE_WINDOWS, replace=False))
            # chunk by chunk (a shard each): a take over the whole chunked column would first
            # concatenate it, copying every shard's features (16 GB at 100M events)
            starts = np.cumsum([0] + [len(c) for c in column.chunks])
            pieces = []
            for i, chunk in enumerate(column.chunks):
                lo, hi = np.searchsorted(rows, [starts[i], starts[i + 1]])
                if hi > lo:
                    pieces.append(chunk.take(pa.array(rows[lo:hi] - starts[i])))
            column = pa.chunked_array(pieces, type=column.type)
        column = column.combine_chunks()  # the flat values: no loop over windows
        x = column.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, self.target_features)
        if len(x):
            self.feat_mean.copy_(torch.as_tensor(x.mean(0), dtype=self.feat_mean.dtype))
            self.feat_std.copy_(torch.as_tensor(np.maximum(x.std(0), 1e-3), dtype=self.feat_std.dtype))
            if self.feature_bins:
                self.feat_edges.copy_(torch.as_tensor(quantile_edges(x, self.feature_bins), dtype=self.feat_edges.dtype))

    @property
    def config(self):  # fit() and the run card read the LM's config
        return self.lm.config

    def _hidden_size(self) -> int:
        cfg = self.lm.config
        return int(getattr(cfg, "n_embd", None) or cfg.hidden_size)

    def _body(self) -> nn.Module:
        """The transformer without its LM head (LoRA layers, if any, are inside it)."""
        lm = self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm
        return lm.base_model

    def head_state(self) -> dict[str, torch.Tensor]:
        """The read-out's own weights (saved beside the LM as `HEAD_FILE`)."""
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith("lm.")}

    # ------------------------------------------------------------------------------- forward
    def forward(self, input_ids, attention_mask, ev_end, ev_item, ev_action, ev_time, ev_cat, tgt_local, tgt_read,
                tgt_label=None, ev_pos=None, tgt_feat=None, return_log_probs: bool = False,
                exclude_history: bool = False, **_: object) -> StreamOutput:
        """Loss (mean NLL of the answers in the label space) and, for scoring, log p [N, C] of the
        N real targets in row-major (window, target) order.

        Only the targets' rows of the label-space logits are ever built, and training needs no
        full distribution: log p(answer) takes one logsumexp over the explore logits and, with
        the copy path, the attention mass on the history events holding the answer.
        """
        h = self._body()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state  # [B, L, d]
        b_idx = torch.arange(h.shape[0], device=h.device)[:, None]
        real = tgt_local >= 0  # [B, T] padding targets are -1
        if ev_pos is None:
            ev_pos = ev_end
        # the read vector: the hidden state at the read position plus the one at the last event's
        # item token (the item just seen, one residual stream away; nothing after the read position)
        prev = (tgt_local - 1).clamp(min=0)
        h_prev_item = h[b_idx, ev_pos.gather(1, prev).clamp(min=0)] * (tgt_local > 0)[..., None]
        h_t = (h[b_idx, tgt_read.clamp(min=0)] + h_prev_item)[real]  # [N, d]
        C = len(self.answer_ids)
        cand = None  # the candidate answers of a sampled softmax; None: all C
        if self.training and self.negatives is not None and C > self.negatives + 1 and tgt_label is not None:
            drawn = torch.randint(0, C, (self.negatives,), device=h.device)
            cand = torch.unique(torch.cat([tgt_label[real].clamp(min=0), drawn]))  # sorted, every answer in it
        ids = self.answer_ids if cand is None else self.answer_ids[cand]
        answers = self.lm.get_input_embeddings()(ids)  # [C', d] (through peft's trainable tokens too)
        bias = self.answer_bias if cand is None else self.answer_bias[cand]
        explore = (h_t @ answers.T + bias).float()  # [N, C']
        if self.features:
            explore = explore + self.feature_mlp(history_features(ev_item, ev_action, ev_time, tgt_local, real).to(h_t.dtype)).float()
        if self.target_features:
            if tgt_feat is None:
                raise ValueError("this model reads per-target features (tgt_feat) and the batch has none: "
                                 "build the windows with model.history_features on (evtlm.data.stream.purchase_features)")
            x = tgt_feat[real]
            z = (x - self.feat_mean) / self.feat_std
            if self.feature_bins:
                # in float32 whatever the model's dtype: bins 1e-4 wide vanish in bfloat16
                z = torch.cat([z, piecewise_linear(x.float(), self.feat_edges.float())], dim=1)
            explore = explore + self.target_mlp(z.to(h_t.dtype)).float()
        attn = gate = None
        if self.copy:
            attn, gate = self._pointer(h, h_t, ev_end, ev_pos, ev_item, ev_action, ev_time, ev_cat, tgt_local, real)
        loss = n = None
        if tgt_label is not None:
            y = tgt_label[real]
            keep = y >= 0  # an answer outside the label space carries no loss
            y0 = y.clamp(min=0)
            col = y0 if cand is None else torch.searchsorted(cand, y0)  # the answer's column among the candidates
            log_pe = explore.gather(1, col[:, None]).squeeze(1) - torch.logsumexp(explore, dim=1)  # [N]
            if self.copy:
                rows = torch.nonzero(real)[:, 0]  # window of each target
                holds = (ev_item[rows] == y0[:, None]).float()  # [N, E] history events holding the answer
                p_rep = (attn * holds).sum(1)
                log_p = torch.logaddexp(torch.log(gate.clamp(min=1e-12)) + torch.log(p_rep.clamp(min=1e-30)),
                                        torch.log((1 - gate).clamp(min=1e-12)) + log_pe)
            else:
                log_p = log_pe
            n = keep.sum()
            loss = -(log_p * keep).sum() / n.clamp(min=1)
            if self.copy and self.training and self.explore_loss:  # the catalog head learns every answer too
                loss = loss - self.explore_loss * (log_pe * keep).sum() / n.clamp(min=1)
        log_probs = None
        if return_log_probs:
            p = torch.softmax(explore, dim=1)
            if self.copy:
                rows = torch.nonzero(real)[:, 0]
                p_rep = torch.zeros_like(p)
                p_rep.scatter_add_(1, ev_item[rows].clamp(min=0).long(), attn)
                p = gate[:, None] * p_rep + (1 - gate[:, None]) * p
            log_probs = torch.log(p.clamp(min=1e-30))
            if exclude_history:  # rank only items the user has not had before the target
                log_probs = log_probs.masked_fill(_seen_items(ev_item, tgt_local, real, p.shape[1]), float("-inf"))
        return StreamOutput(loss=loss, n_targets=n, log_probs=log_probs)

    def _pointer(self, h, h_t, ev_end, ev_pos, ev_item, ev_action, ev_time, ev_cat, tgt_local, real):
        """(attention [N, E] over the history events of each target, gate [N]) of the copy path."""
        B, E = ev_item.shape
        b_idx = torch.arange(B, device=h.device)[:, None]
        rows = torch.nonzero(real)[:, 0]
        h_j = h[b_idx, ev_end.clamp(min=0)] + h[b_idx, ev_pos.clamp(min=0)]  # [B, E, d] each event's end + its item
        # one product per window, [B, T, d] x [B, d, E]: every target's query against its own
        # window's keys, without copying the keys out to each target as [N, E, d] (0.92 -> 0.86 s
        # a training step on Online Retail next_item)
        q = h_t.new_zeros(*real.shape, h_t.shape[-1])
        q[real] = self.query(h_t)
        s = (q @ self.key(h_j).transpose(1, 2))[real] / math.sqrt(h.shape[-1])  # [N, E]
        phi = _pair_features(self.action_emb, ev_item, ev_action, ev_time, ev_cat, tgt_local)[real]  # [N, E, F]
        s = s + self.pair_mlp(phi).squeeze(-1)
        local = tgt_local[real]
        usable = (torch.arange(E, device=h.device)[None, :] < local[:, None]) & (ev_item[rows] >= 0)  # j < t: causal
        s = s.float().masked_fill(~usable, float("-inf"))
        has = usable.any(-1)  # any history item to point at
        attn = torch.softmax(torch.where(has[:, None], s, torch.zeros_like(s)), dim=-1) * usable
        psi = torch.stack([torch.log1p(usable.sum(-1).float()), has.float()], dim=-1)
        gate = torch.sigmoid(self.gate(torch.cat([h_t, psi.to(h_t.dtype)], dim=-1)).float()).squeeze(-1)
        return attn, torch.where(has, gate, torch.zeros_like(gate))  # nothing to repeat: all explore

    # ------------------------------------------------------------------------------- scoring
    @torch.no_grad()
    def score(self, batch: dict[str, torch.Tensor], exclude_history: bool = False) -> torch.Tensor:
        """log p [N, C] for the real targets of a collated batch (row-major window, target order)."""
        batch = {k: v for k, v in batch.items() if k != "tgt_label"}
        return self(**batch, return_log_probs=True, exclude_history=exclude_history).log_probs


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
                         torch.log1p(dt / 86400.0), torch.log1p(count), torch.log1p(acted), (later == 0).float()],
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


class StreamCollator:
    """Pads stream windows: tokens with ``pad_id``, event and target lists with -1 (-100 labels).

    >>> c = StreamCollator(pad_id=0)
    >>> row = {"input_ids": [5, 6, 7], "ev_end": [1, 2], "ev_item": [3, 4], "ev_action": [0, 0], "ev_time": [0, 9],
    ...        "ev_cat": [-1, -1], "tgt_local": [1, 2], "tgt_read": [1, 2], "tgt_label": [4, 1], "tgt_example": [0, 1]}
    >>> b = c([row, {**row, "input_ids": [5], "ev_end": [0], "ev_item": [3], "ev_action": [0], "ev_time": [0],
    ...       "ev_cat": [-1], "tgt_local": [1], "tgt_read": [0], "tgt_label": [2], "tgt_example": [2]}])
    >>> b["input_ids"].tolist(), b["tgt_label"].tolist(), int(b["real_tokens"])
    ([[5, 6, 7], [5, 0, 0]], [[4, 1], [2, -100]], 4)
    """

    event_keys = ("ev_end", "ev_pos", "ev_item", "ev_action", "ev_time", "ev_cat")
    target_keys = ("tgt_local", "tgt_read", "tgt_label", "tgt_example")

    def __init__(self, pad_id: int) -> None:
        self.pad_id = int(pad_id)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        n = len(rows)
        width = max(len(r["input_ids"]) for r in rows)
        n_ev = max(1, max(len(r["ev_end"]) for r in rows))
        n_t = max(1, max(len(r["tgt_read"]) for r in rows))
        out = {"input_ids": torch.full((n, width), self.pad_id, dtype=torch.long),
               "attention_mask": torch.zeros((n, width), dtype=torch.long)}
        for key in self.event_keys:
            out[key] = torch.full((n, n_ev), -1, dtype=torch.long)
        for key in self.target_keys:
            out[key] = torch.full((n, n_t), -100 if key == "tgt_label" else -1, dtype=torch.long)
        n_feat = 0
        if "tgt_feat" in rows[0]:  # flattened [T * F] per window (purchase)
            n_feat = next((len(r["tgt_feat"]) // len(r["tgt_read"]) for r in rows if len(r["tgt_read"])), 0)
            out["tgt_feat"] = torch.zeros((n, n_t, n_feat), dtype=torch.float32)
        for i, r in enumerate(rows):  # per window in a batch, not per event
            k = len(r["input_ids"])
            out["input_ids"][i, :k] = torch.as_tensor(r["input_ids"])
            out["attention_mask"][i, :k] = 1
            for key in self.event_keys:
                if key in r:
                    out[key][i, : len(r[key])] = torch.as_tensor(r[key])
            for key in self.target_keys:
                if key in r:
                    out[key][i, : len(r[key])] = torch.as_tensor(r[key])
            if n_feat and len(r["tgt_read"]):
                out["tgt_feat"][i, : len(r["tgt_read"])] = torch.as_tensor(r["tgt_feat"], dtype=torch.float32).view(-1, n_feat)
        out["tgt_read"] = out["tgt_read"].clamp(min=0)
        out["real_tokens"] = out["attention_mask"].sum()
        out["slot_tokens"] = torch.tensor(n * width)
        out["n_examples"] = torch.tensor(n)
        return out


# ------------------------------------------------------------------------------------ scoring
@torch.no_grad()
def stream_predictions(model: StreamLM, dataset, example_ids, *, top_k: int | None = None, batch_size: int = 16,
                       exclude_history: bool = False, progress: bool = False):
    """Every target of the stream windows in ``dataset``, in the order of ``example_ids``.

    Returns probabilities ``[n, C]`` (``top_k=None``: closed sets such as next_action), or the
    ``top_k`` label-space indices ``[n, top_k]`` and their log-probabilities (next_item: the
    whole catalog ranked from one product per target). Windows are batched longest first.
    """
    import numpy as np
    import pandas as pd
    from tqdm.auto import tqdm

    from evtlm.data.stream import STREAM_COLUMNS

    from evtlm.sharded import gather_parts, rank_world

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    ds = dataset.select_columns([c for c in STREAM_COLUMNS if c in dataset.column_names])
    # only the windows holding an asked-for target: a sample of examples costs its windows, not the split
    tgt = ds["tgt_example"]
    n_tgt = np.fromiter((len(t) for t in tgt), dtype=np.int64, count=len(tgt))
    flat = np.concatenate([np.asarray(t, dtype=np.int64) for t in tgt]) if len(tgt) else np.zeros(0, np.int64)
    needed = np.unique(np.repeat(np.arange(len(tgt)), n_tgt)[np.isin(flat, np.asarray(example_ids))])
    lengths = np.asarray([len(x) for x in ds.select(needed)["ev_end"]]) if len(needed) else np.zeros(0, np.int64)
    rank, world = rank_world()  # several processes: each scores every world-th window (balanced by length)
    order = needed[np.argsort(-lengths, kind="stable")][rank::world]
    collate = StreamCollator(pad_id=getattr(model.config, "pad_token_id", None) or 0)
    ids, outs, scores = [], [], []
    for lo in tqdm(range(0, len(order), batch_size), desc="score", disable=not progress, leave=False):
        batch = collate([ds[int(i)] for i in order[lo: lo + batch_size]])
        ex = batch.pop("tgt_example")
        for key in ("real_tokens", "slot_tokens", "n_examples"):
            batch.pop(key)
        batch = {k: v.to(device) for k, v in batch.items()}
        log_p = model.score(batch, exclude_history=exclude_history)  # [N, C], real targets in row-major order
        ids.append(ex[(batch["tgt_local"] >= 0).cpu()].numpy())
        if top_k is None:
            outs.append(log_p.exp().cpu().numpy())
        else:
            val, idx = torch.topk(log_p, min(top_k, log_p.shape[-1]), dim=-1)
            outs.append(idx.cpu().numpy())
            scores.append(val.cpu().numpy())
    model.train(was_training)
    if world > 1:  # every process's targets, in rank order: then each picks example_ids as one process would
        parts = [p for p in gather_parts((ids, outs, scores)) if p[0]]
        ids, outs, scores = ([a for p in parts for a in p[j]] for j in range(3))
    got = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    where = pd.Index(got).get_indexer(np.asarray(example_ids))
    if (where < 0).any():
        from evtlm.errors import TaskError

        raise TaskError(f"{int((where < 0).sum())} examples have no target in the stream windows", where="evtlm.data.stream",
                        fix="rebuild the data cache (delete ~/.cache/evtlm/datasets)")
    pred = np.concatenate(outs)[where]
    if top_k is None:
        return pred
    return pred, np.concatenate(scores)[where]
