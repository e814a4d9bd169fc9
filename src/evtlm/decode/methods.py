"""Constrained decoding: every answer the model gives is a member of the label space.

Three decoders over prompts given as token-id lists of any length (batched internally with
LEFT padding, a padding-aware attention mask and position ids counted from the first real token,
so a batched result equals the one-prompt-at-a-time result):

- :func:`first_token_probs`: closed sets whose first tokens differ (actions, " yes"/" no"): one
  forward pass, softmax over the candidates' first-token logits -> a distribution over the set.
- :func:`sequence_logprobs`: exact total log-likelihood of every multi-token candidate (item
  strings under BPE). The prompt runs once and its KV cache is shared by all candidates.
- :func:`beam_search_items`: catalogs too large to score exhaustively: ``model.generate`` beam
  search restricted by a vectorised trie ``LogitsProcessor`` (:mod:`evtlm.decode.trie`), length
  penalty off, so a result's score is its total log-probability, as in ``sequence_logprobs``.

:func:`closed_set_probs` turns either of the first two into a distribution over a closed label
space (first token when the first tokens differ, else normalised sequence likelihoods), and
:func:`decode_items` picks exhaustive scoring for small catalogs and beams for large ones.
Scores are ``log P(item tokens | prompt)``; pass ``end_id=tokenizer.eos_token_id`` to score
``item + eos`` instead, which is what the model was trained to emit after a closed-set answer,
and which stops a short item (" Product 100") from outscoring an item it prefixes
(" Product 1002") just by being shorter.

>>> import torch
>>> from transformers import GPT2Config, GPT2LMHeadModel
>>> _ = torch.manual_seed(0)
>>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=40, n_positions=64,
...                                   bos_token_id=0, eos_token_id=0))
>>> prompts = [[3, 4, 5], [7]]
>>> p = first_token_probs(model, prompts, [[10], [11, 12], [13]])
>>> p.shape, np.allclose(p.sum(axis=1), 1.0)
((2, 3), True)
>>> lp = sequence_logprobs(model, prompts, [[10], [11, 12], [13]])
>>> bool(np.all(lp < 0)), np.allclose(np.exp(lp[:, [0, 2]]) / np.exp(lp[:, [0, 2]]).sum(1, keepdims=True),
...                                   first_token_probs(model, prompts, [[10], [13]]))
(True, True)
>>> catalog = [[10], [11, 12], [11, 13]]      # two items share their first token
>>> idx, scores = beam_search_items(model, prompts, catalog, top_k=2, num_beams=3)
>>> exact = sequence_logprobs(model, prompts, catalog)
>>> bool(np.all(idx == np.argsort(-exact, axis=1)[:, :2])), np.allclose(scores, -np.sort(-exact, axis=1)[:, :2])
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from evtlm.decode.batch import TokenLists, check_ids, inference, kv_layers, left_pad, prompt_batches, vocab_size
from evtlm.decode.beam import beam_search_items
from evtlm.decode.trie import ItemTrie
from evtlm.errors import TaskError

__all__ = [
    "first_token_probs",
    "sequence_logprobs",
    "beam_search_items",
    "decode_items",
    "closed_set_probs",
    "candidate_token_ids",
    "first_tokens_distinct",
    "left_pad",
    "top_k_from_scores",
]


def candidate_token_ids(tokenizer, labels: Sequence[str]) -> list[list[int]]:
    """Token ids of each label string exactly as appended to a prompt (no special tokens).

    Labels keep their leading space (" Product 1002" -> [ĠProduct, Ġ100, 2] under GPT-2), so the
    ids match what the model saw after the prompt in training.
    """
    ids = tokenizer(list(labels), add_special_tokens=False)["input_ids"]
    empty = [i for i, t in enumerate(ids) if not t]
    if empty:
        raise TaskError(f"labels {[labels[i] for i in empty[:5]]} tokenize to nothing", where="label space",
                        fix="drop empty labels")
    return [list(t) for t in ids]


def first_tokens_distinct(candidate_ids: TokenLists) -> bool:
    """Whether one forward pass can tell the candidates apart (their first tokens differ)."""
    firsts = [c[0] for c in candidate_ids]
    return len(set(firsts)) == len(firsts)


def first_token_probs(model, prompts: TokenLists, candidate_ids: TokenLists, batch_size: int = 32,
                      pad_id: int = 0) -> np.ndarray:
    """P(candidate | prompt) [n, C] from one forward pass: softmax over the candidates' first tokens.

    Exact for single-token candidates (" yes"/" no"); for multi-token ones with distinct first
    tokens (action phrases) it is the model's choice at the first token, which decides the
    answer. Rows sum to 1. Candidates sharing a first token cannot be told apart this way.
    """
    if not first_tokens_distinct(candidate_ids):
        firsts = [c[0] for c in candidate_ids]
        dup = [i for i, f in enumerate(firsts) if firsts.count(f) > 1][:5]
        raise TaskError(f"candidates {dup} share their first token, so one forward pass cannot tell them apart",
                        where="first_token_probs", fix="score whole sequences (decode.method: sequence)")
    out = np.zeros((len(prompts), len(candidate_ids)), dtype=np.float64)
    if not len(prompts):
        return out
    with inference(model) as device:
        vocab = vocab_size(model)
        check_ids(prompts, vocab, "prompt")
        check_ids(candidate_ids, vocab, "candidate")
        first = torch.tensor([c[0] for c in candidate_ids], device=device)
        for rows, ids, mask, pos in prompt_batches(prompts, batch_size, pad_id, device):
            # logits_to_keep=1: the LM head runs on the last position only ([b, V], not [b, W, V])
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[:, -1]
            out[rows] = torch.softmax(logits[:, first].double(), dim=-1).cpu().numpy()
    return out


def _pad_candidates(candidate_ids: TokenLists, end_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded candidate tokens [C, L] (+ end_id when given) and their lengths [C]."""
    seqs = [list(c) + ([end_id] if end_id is not None else []) for c in candidate_ids]
    lengths = torch.tensor([len(s) for s in seqs])
    tokens = torch.zeros((len(seqs), int(lengths.max())), dtype=torch.long)
    tokens[torch.arange(tokens.shape[1])[None, :] < lengths[:, None]] = torch.tensor([t for s in seqs for t in s])
    return tokens, lengths


def sequence_logprobs(model, prompts: TokenLists, candidate_ids: TokenLists, batch_size: int = 8,
                      pad_id: int = 0, end_id: int | None = None, max_tokens: int = 16384,
                      use_cache: bool = True) -> np.ndarray:
    """Exact ``log P(candidate tokens [+ end_id] | prompt)`` [n, C] for every prompt and candidate.

    With ``use_cache`` the prompt batch runs once and its KV cache is copied to each
    (prompt, candidate) row, so only the few candidate tokens run per pair (a prompt of P tokens
    and C candidates of L tokens cost P + C * L token-passes instead of C * (P + L)). Without
    it (or for models whose cache cannot be copied) each pair runs as one concatenated sequence.
    Rows are chunked so that rows * (prompt width + L) stays under ``max_tokens``.
    """
    n, n_cand = len(prompts), len(candidate_ids)
    out = np.zeros((n, n_cand), dtype=np.float64)
    if not n:
        return out
    with inference(model) as device:
        vocab = vocab_size(model)
        check_ids(prompts, vocab, "prompt")
        check_ids(candidate_ids, vocab, "candidate")
        cand, cand_len = _pad_candidates(candidate_ids, end_id)
        cand, cand_len = cand.to(device), cand_len.to(device)
        cand_mask = (torch.arange(cand.shape[1], device=device)[None, :] < cand_len[:, None]).long()  # [C, L]
        for rows, ids, mask, pos in prompt_batches(prompts, batch_size, pad_id, device):
            b, width = ids.shape
            chunk = max(1, max_tokens // (b * (width + cand.shape[1])))  # candidates per chunk
            res = None
            if use_cache:
                first = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
                kv = kv_layers(first.past_key_values)
                if kv is not None:
                    first_lp = torch.log_softmax(first.logits[:, -1].float(), dim=-1)  # [b, V]: P(token 0)
                    res = torch.cat([_score_chunk_cached(model, kv, first_lp, mask, cand[c:c + chunk],
                                                         cand_mask[c:c + chunk]) for c in range(0, n_cand, chunk)], 1)
            if res is None:
                res = torch.cat([_score_chunk_concat(model, ids, mask, cand[c:c + chunk], cand_mask[c:c + chunk])
                                 for c in range(0, n_cand, chunk)], dim=1)
            out[rows] = res.double().cpu().numpy()
    return out


def _gather_token_lp(logits: torch.Tensor, targets: torch.Tensor, tmask: torch.Tensor) -> torch.Tensor:
    """Sum over positions of log_softmax(logits)[target] where tmask: [R, L, V], [R, L] -> [R]."""
    lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (lp * tmask).sum(-1)


def _score_chunk_cached(model, kv, first_lp, prompt_mask, cand, cmask) -> torch.Tensor:
    """Scores [b, c] of c candidates after b cached prompts: one forward over the b * c pairs."""
    from transformers import DynamicCache

    b, c, length = first_lp.shape[0], cand.shape[0], cand.shape[1]
    pair = torch.arange(b, device=cand.device).repeat_interleave(c)  # row -> prompt, [b*c]
    which = torch.arange(c, device=cand.device).repeat(b)  # row -> candidate, [b*c]
    cache = DynamicCache([(k[pair], v[pair]) for k, v in kv])  # copies: the forward appends to it
    toks, tmask = cand[which], cmask[which]  # [b*c, L]; right padding after the candidate is harmless
    attn = torch.cat([prompt_mask[pair], tmask], dim=1)
    start = prompt_mask.sum(1)[pair]  # next position = number of real prompt tokens
    pos = start[:, None] + torch.arange(length, device=cand.device)[None, :]
    total = first_lp[pair, toks[:, 0]]
    if length > 1:  # positions 0..L-2 predict tokens 1..L-1
        logits = model(input_ids=toks[:, :-1], attention_mask=attn[:, :-1], position_ids=pos[:, :-1],
                       past_key_values=cache, use_cache=True).logits
        total = total + _gather_token_lp(logits, toks[:, 1:], tmask[:, 1:])
    return total.view(b, c)


def _score_chunk_concat(model, ids, mask, cand, cmask) -> torch.Tensor:
    """Fallback: prompt + candidate as one sequence per pair (no cache); scores [b, c]."""
    b, c, length = ids.shape[0], cand.shape[0], cand.shape[1]
    pair = torch.arange(b, device=ids.device).repeat_interleave(c)
    which = torch.arange(c, device=ids.device).repeat(b)
    seq = torch.cat([ids[pair], cand[which]], dim=1)  # [b*c, W + L]
    attn = torch.cat([mask[pair], cmask[which]], dim=1)
    pos = (attn.cumsum(1) - 1).clamp(min=0)
    logits = model(input_ids=seq, attention_mask=attn, position_ids=pos, logits_to_keep=length + 1).logits
    # logits[:, j] (of the last L+1 positions) predicts candidate token j
    return _gather_token_lp(logits[:, :-1], cand[which], cmask[which]).view(b, c)


def closed_set_probs(model, prompts: TokenLists, candidate_ids: TokenLists, method: str = "auto",
                     batch_size: int = 32, pad_id: int = 0, end_id: int | None = None) -> np.ndarray:
    """A distribution [n, C] over a closed label space (actions, yes/no); rows sum to 1.

    ``method`` (``decode.method``): ``first_token`` = :func:`first_token_probs`; ``sequence`` =
    softmax over :func:`sequence_logprobs` (exact, renormalised over the label space; needed
    when labels share a first token, e.g. " added to cart" / " added to favorites"); ``auto``
    picks ``first_token`` when the first tokens differ, else ``sequence``.

    >>> import torch
    >>> from transformers import GPT2Config, GPT2LMHeadModel
    >>> _ = torch.manual_seed(0)
    >>> model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=40, eos_token_id=0))
    >>> p = closed_set_probs(model, [[3, 4], [5]], [[7, 8], [7, 9], [10]])   # shared first token 7
    >>> p.shape, np.allclose(p.sum(axis=1), 1.0)
    ((2, 3), True)
    """
    if method == "auto":
        method = "first_token" if first_tokens_distinct(candidate_ids) else "sequence"
    if method == "first_token":
        return first_token_probs(model, prompts, candidate_ids, batch_size=batch_size, pad_id=pad_id)
    if method != "sequence":
        raise TaskError(f"decode.method {method!r} cannot score a closed label set", where="decode.method",
                        fix="use 'auto', 'first_token' or 'sequence' (beam is for item catalogs)")
    lp = sequence_logprobs(model, prompts, candidate_ids, batch_size=batch_size, pad_id=pad_id, end_id=end_id)
    lp = lp - lp.max(axis=1, keepdims=True)  # stable softmax over the label space
    return np.exp(lp) / np.exp(lp).sum(axis=1, keepdims=True)


def decode_items(model, prompts: TokenLists, candidate_ids: TokenLists, top_k: int = 10, num_beams: int = 20,
                 exclude: Sequence[Sequence[int]] | None = None, batch_size: int = 8, pad_id: int = 0,
                 end_id: int | None = None, exhaustive_max_items: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items ``(indices, scores)`` [n, k]: exact exhaustive scoring for catalogs of at most
    ``exhaustive_max_items`` items, trie beam search (:func:`beam_search_items`) above that."""
    if len(candidate_ids) > exhaustive_max_items:
        return beam_search_items(model, prompts, candidate_ids, top_k=top_k, num_beams=num_beams, exclude=exclude,
                                 batch_size=batch_size, pad_id=pad_id, end_id=end_id)
    ItemTrie.build(candidate_ids)  # same validation as the beam path: empty or duplicate items
    lp = sequence_logprobs(model, prompts, candidate_ids, batch_size=batch_size, pad_id=pad_id, end_id=end_id)
    return top_k_from_scores(lp, top_k, exclude)


def top_k_from_scores(lp: np.ndarray, top_k: int, exclude: Sequence[Sequence[int]] | None = None):
    """Best ``top_k`` columns per row of a score matrix [n, C], excluded ones removed (-1/-inf padded).

    >>> idx, best = top_k_from_scores(np.array([[-1.0, -0.5, -3.0]]), 3, exclude=[[1]])
    >>> idx.tolist(), best.tolist()
    ([[0, 2, -1]], [[-1.0, -3.0, -inf]])
    """
    lp = np.array(lp, dtype=np.float64, copy=True)
    n, c = lp.shape
    if exclude is not None:
        if len(exclude) != n:
            raise TaskError(f"exclude has {len(exclude)} entries for {n} prompts", where="exclude",
                            fix="pass one list of excluded candidate indices per prompt (or None)")
        counts = np.array([len(e) for e in exclude], dtype=np.int64)
        if counts.sum():
            cols = np.concatenate([np.asarray(list(e), dtype=np.int64) for e in exclude if len(e)])
            if cols.min() < 0 or cols.max() >= c:
                raise TaskError(f"exclude holds item index {int(cols[(cols < 0) | (cols >= c)][0])}, outside the "
                                f"catalog of {c}", where="exclude", fix="pass candidate indices in 0..C-1")
            lp[np.repeat(np.arange(n), counts), cols] = -np.inf
    order = np.argsort(-lp, axis=1, kind="stable")[:, :top_k]
    best = np.take_along_axis(lp, order, axis=1)
    indices = np.where(np.isfinite(best), order, -1)
    if top_k > c:  # a catalog smaller than k: pad
        indices = np.pad(indices, ((0, 0), (0, top_k - c)), constant_values=-1)
        best = np.pad(best, ((0, 0), (0, top_k - c)), constant_values=-np.inf)
    return indices.astype(np.int64), best
