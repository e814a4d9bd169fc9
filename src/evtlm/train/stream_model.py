"""`StreamLM`: a causal LM that answers every target of a stream window in one forward pass.

The LM reads the verbalized window (`evtlm.data.stream`); at each target's read position its final
hidden state, plus the one at the previous event's item token (the item just seen, one residual
stream away, as in SASRec), makes the read vector ``h_t``, which scores the label space through
the LM's own (tied) token embeddings::

    explore logits [T, C] = h_t @ E[answer tokens]^T + b        (E: the input embedding rows)

For next_item the answer tokens are the ``<item_…>`` tokens, so the whole catalog is ranked by
one product, restricted to the label space by construction. For next_action they are each
action answer's first token.

This module owns the model (its weights, forward pass, loss and feature scale) and
`answer_token_ids`; what it reads beside the hidden states is in `evtlm.train.stream_features`,
the padding of windows in `evtlm.train.stream_collate`, the scoring of a dataset in
`evtlm.train.stream_scoring`. It must not build windows (`evtlm.data.stream`) or compute metrics.

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

**Markov path** (``model.markov_path``, next_item). FPMC's factor, on the tied rows: every
answer's explore logit gains ``w * cos(E[last item], E[answer])``, with ``w`` learned (from 3).
The read vector already carries the last item's hidden state, but through the transformer; this
path reads the item rows directly, so "what follows the last item" is one product away from the
start of training and item_init=transitions puts that geometry in place before it. Test, seed 0,
item_init=transitions: YOOCHOOSE (HR@20 / MRR@20) off 0.668 / 0.381, on 0.681 / 0.394 (SASRec
0.665 / 0.380); Online Retail (HR@10 / NDCG@10) off 0.247 / 0.159, on 0.242 / 0.161 (a tie:
off there).

**Pair memory** (``model.pair_memory``, next_item). The rows above are low-rank: 128 numbers per
item cannot hold which of 3,700 items follows which, and on Online Retail the catalog head ranked
targets outside the customer's history at HR@10 0.01-0.03 where last-item transitions reach 0.13.
This path gives the model a full-rank memory of that, learned like any other weight: one logit
bias per (last item, answer) pair that occurs among the training targets, zero at the start::

    explore[t, b] += 10 * w[last item of t, b]      (w: a learned weight per training pair)

The table is the *set* of pairs, never their counts: what it holds is what gradient descent puts
there, a bigram the size of the training transitions (a pair seen once costs one weight). Held-out
events are never read into it, and a pair first seen at test time has no weight. Measured on
Online Retail (test HR@10 / NDCG@10, 227k training pairs; off: seeds 42 / 0 0.251 / 0.162 and
0.253 / 0.166): on 0.244 / 0.162 and 0.245 / 0.162; x100 instead of x10 0.242 / 0.156, with the
catalog head's own NLL 0.227 / 0.149; only pairs seen twice (29k) 0.246 / 0.161, at x30 0.247 /
0.162. No gain: most pairs occur once, so a weight learns its own example, and the mixture's
top 10 stays the history's items. Off in the shipped recipes.

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

import torch
from torch import nn
from transformers.utils import ModelOutput

from evtlm.recipe import ACTIONS
from evtlm.train.stream_collate import StreamCollator
from evtlm.train.stream_features import (N_FEATURES, N_HISTORY_FEATURES, _pair_features, _seen_items, history_features,
                                         piecewise_linear, quantile_edges)
from evtlm.train.stream_scoring import stream_predictions

__all__ = ["StreamLM", "StreamOutput", "StreamCollator", "HEAD_FILE", "answer_token_ids", "stream_predictions",
           "quantile_edges", "piecewise_linear"]

HEAD_FILE = "stream_head.safetensors"


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
                 feature_bins: int = 0, markov: bool = False,
                 pairs: int | tuple[torch.Tensor, torch.Tensor] = 0) -> None:
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
        self.markov = bool(markov)
        if self.markov:  # the last item -> answer path's strength, learned; x10 so it moves at the lr's pace
            self.markov_scale = nn.Parameter(torch.tensor(0.3))
        # pair memory: CSR over the last item (indptr [C + 1], answers [P]) and a weight per pair;
        # an int (a run dir being loaded) sizes the buffers, load_state_dict fills them
        self.pair_memory = bool(isinstance(pairs, tuple) or pairs)
        if self.pair_memory:
            indptr, cols = pairs if isinstance(pairs, tuple) else (torch.zeros(len(answer_token_ids) + 1, dtype=torch.long),
                                                                 torch.zeros(int(pairs), dtype=torch.long))
            self.register_buffer("pair_indptr", torch.as_tensor(indptr, dtype=torch.long))
            self.register_buffer("pair_cols", torch.as_tensor(cols, dtype=torch.long))
            self.pair_weight = nn.Parameter(torch.zeros(len(cols)))
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
    FEATURE_SCALE_RUN = 256  # ... drawn as runs of this many consecutive windows

    def fit_feature_scale(self, dataset) -> None:
        """Set the per-target feature standardisation from a stream dataset's ``tgt_feat`` (the
        training split's: validation and test are scaled with the same numbers). Over
        `FEATURE_SCALE_WINDOWS` windows (a log of millions of users), a seeded sample of that
        many windows: the scale of 100M events is read from a few hundred MB, not all of it.

        The sample is drawn as runs of `FEATURE_SCALE_RUN` consecutive windows (consecutive
        windows are different users or the same user's history; shards are hashed by user):
        on memory-mapped shards, 20,000 scattered rows each fault in a readahead block, so they
        pulled 1.1 GB of a 2.9 GB training split into memory at 20M events, where runs read
        about what they use."""
        import numpy as np
        import pyarrow as pa

        if not self.target_features or "tgt_feat" not in getattr(dataset, "column_names", ()):
            return
        table = dataset.data.table if hasattr(dataset.data, "table") else dataset.data
        column = table.column("tgt_feat")
        if len(dataset) > self.FEATURE_SCALE_WINDOWS:
            run = self.FEATURE_SCALE_RUN
            n_runs = len(dataset) // run  # the full runs; a ragged tail is never drawn
            picked = np.random.default_rng(0).choice(n_runs, min(n_runs, -(-self.FEATURE_SCALE_WINDOWS // run)), replace=False)
            rows = (np.sort(picked)[:, None] * run + np.arange(run)[None, :]).ravel()
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
        if self.markov:
            explore = explore + self._markov(ev_item.gather(1, prev)[real], tgt_local[real] > 0, answers)
        if self.pair_memory:
            explore = explore + self._pair_bias(ev_item.gather(1, prev)[real], tgt_local[real] > 0, cand, explore.shape[1])
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

    def _markov(self, prev_item, has_prev, answers):
        """[N, C'] the last item's pull on every answer: a learned scale times the cosine of their
        rows (0 for a target with no item before it). ``prev_item`` [N] is the last event's
        label-space item (-1: none), ``has_prev`` [N] whether the window holds an event before the
        target. The rows' geometry is what item_init and training give them; this path makes
        "what follows the last item" one product away."""
        prev_item = prev_item.long()
        ok = has_prev & (prev_item >= 0)
        e_prev = self.lm.get_input_embeddings()(self.answer_ids[prev_item.clamp(min=0)])  # [N, d]
        cos = nn.functional.normalize(e_prev.float(), dim=-1) @ nn.functional.normalize(answers.float(), dim=-1).T
        return 10 * self.markov_scale * cos * ok[:, None]

    PAIR_SCALE = 10.0  # w moves at Adam's pace (about lr a step); x10 lets a pair seen a few times count

    def _pair_bias(self, prev_item, has_prev, cand, width):
        """[N, width] the pair memory's logit bias: ``PAIR_SCALE * w[last item, answer]`` for the
        training pairs of each target's last item, 0 elsewhere (and for a target with no item
        before it). ``cand`` maps answers to columns under sampled softmax (None: all answers)."""
        a = prev_item.long()
        ok = has_prev & (a >= 0)
        a = a.clamp(min=0)
        lo = self.pair_indptr[a]
        n = (self.pair_indptr[a + 1] - lo) * ok  # pairs per target
        rows = torch.repeat_interleave(torch.arange(len(a), device=a.device), n)
        first = torch.cumsum(n, 0) - n  # where each target's run starts in the flat list
        idx = torch.repeat_interleave(lo - first, n) + torch.arange(int(n.sum()), device=a.device)
        cols, vals = self.pair_cols[idx], self.PAIR_SCALE * self.pair_weight[idx]
        if cand is not None:  # keep the drawn answers, at their columns
            where = torch.full((len(self.answer_ids),), -1, dtype=torch.long, device=a.device)
            where[cand] = torch.arange(len(cand), device=a.device)
            cols = where[cols]
            kept = cols >= 0
            rows, cols, vals = rows[kept], cols[kept], vals[kept]
        return torch.zeros(len(a), width, device=a.device).index_put((rows, cols), vals.float())

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
