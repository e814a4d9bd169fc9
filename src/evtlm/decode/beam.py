"""Top-k catalog items by trie-constrained beam search (``model.generate`` + a vectorised processor).

See :func:`beam_search_items`; the trie and its ``LogitsProcessor`` live in :mod:`evtlm.decode.trie`.
Two things make it fast: the processor indexes flat trie tensors for all beams at once (no
Python per beam or per step), and each prompt runs once, its KV cache copied to its beams,
instead of ``generate`` running every prompt ``num_beams`` times.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from evtlm.decode.batch import TokenLists, check_ids, inference, kv_layers, prompt_batches, vocab_size
from evtlm.decode.trie import ItemTrie, TrieLogitsProcessor
from evtlm.errors import TaskError

__all__ = ["beam_search_items"]


def beam_search_items(model, prompts: TokenLists, candidate_ids: TokenLists, top_k: int = 10,
                      num_beams: int = 20, exclude: Sequence[Sequence[int]] | None = None,
                      batch_size: int = 8, pad_id: int = 0, end_id: int | None = None,
                      marker_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k catalog items per prompt by trie-constrained beam search: ``(indices, scores)`` [n, k].

    Every index is a member of the catalog (``candidate_ids``); ``scores`` are total
    log-probabilities (length penalty 0, as :func:`sequence_logprobs` with the same ``end_id``),
    best first. ``exclude[i]`` lists candidate indices never returned for prompt i (e.g. the
    items already in its history). Beam search is approximate; with ``num_beams`` at least the
    number of (non-excluded) items it is exact: no prefix is ever pruned. Rows with fewer than
    ``top_k`` reachable items are padded with index -1 and score -inf.

    The end of an item is a marker token: ``end_id`` when given (scored, since the model was
    trained to emit it), else ``marker_id`` (default: the model's eos, else the lowest id no
    candidate uses) at no cost. ``num_beams=1`` is greedy search, with the same exact scores.
    """
    if num_beams < top_k:
        raise TaskError(f"num_beams ({num_beams}) < top_k ({top_k}): beam search keeps only num_beams items",
                        where="decode.num_beams", fix=f"set decode.num_beams to at least {top_k}")
    n = len(prompts)
    if exclude is not None and len(exclude) != n:
        raise TaskError(f"exclude has {len(exclude)} entries for {n} prompts", where="exclude",
                        fix="pass one list of excluded candidate indices per prompt (or None)")
    indices = np.full((n, top_k), -1, dtype=np.int64)
    scores = np.full((n, top_k), -np.inf, dtype=np.float64)
    if not n:
        return indices, scores
    from transformers import GenerationConfig, LogitsProcessorList

    with inference(model) as device:
        vocab = vocab_size(model)
        check_ids(prompts, vocab, "prompt")
        check_ids(candidate_ids, vocab, "candidate")
        marker = _end_marker(model, candidate_ids, vocab, end_id if end_id is not None else marker_id)
        trie = ItemTrie.build(candidate_ids).to(device)
        beam_args = dict(
            length_penalty=0.0,  # beam score = sum of log-probs / len**0 = total log-probability
            early_stopping=False,  # with no length penalty its bound is exact: stop when no running beam can win
        ) if num_beams > 1 else {}  # num_beams=1 is generate's greedy search, which has neither flag
        gen_cfg = GenerationConfig(
            num_beams=num_beams, num_return_sequences=num_beams, do_sample=False, **beam_args,
            max_new_tokens=trie.max_len + 1, eos_token_id=marker, pad_token_id=marker,
            output_scores=True, return_dict_in_generate=True, use_cache=True)
        for rows, ids, mask, pos in prompt_batches(prompts, batch_size, pad_id, device):
            proc = TrieLogitsProcessor(trie, ids.shape[1], num_beams, marker, score_end=end_id is not None,
                                       exclude=None if exclude is None else [exclude[r] for r in rows])
            cache = _shared_prompt_cache(model, ids, mask, pos, num_beams)
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg,
                                 logits_processor=LogitsProcessorList([proc]),
                                 **({"past_key_values": cache} if cache is not None else {}))
            generated = out.sequences[:, ids.shape[1]:]
            seq_score = out.sequences_scores if num_beams > 1 else _greedy_scores(out.scores, generated, marker)
            item, seq_score = _finished_items(trie, generated, seq_score, marker)
            _top_k_per_row(item.view(len(rows), num_beams).cpu().numpy(),
                           seq_score.view(len(rows), num_beams).double().cpu().numpy(),
                           indices, scores, rows)
    return indices, scores


def _shared_prompt_cache(model, ids, mask, pos, num_beams: int):
    """KV cache of each prompt but its last token, run once and copied to the prompt's beams.

    ``generate`` copies every prompt ``num_beams`` times *before* its first forward pass, so a
    prompt of W tokens would cost num_beams * W token-passes. Handing it this cache leaves one
    token per beam to run (W + num_beams). Row order matches generate's own expansion
    (``repeat_interleave``: example 0's beams, then example 1's). None when it cannot apply.
    """
    if ids.shape[1] < 2:
        return None
    from transformers import DynamicCache

    first = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1], use_cache=True,
                  logits_to_keep=1)
    kv = kv_layers(first.past_key_values)
    if kv is None:
        return None
    return DynamicCache([(k.repeat_interleave(num_beams, 0), v.repeat_interleave(num_beams, 0)) for k, v in kv])


def _end_marker(model, candidate_ids: TokenLists, vocab: int, chosen: int | None) -> int:
    """The token that closes an item: ``chosen``, else the model's eos, else the lowest unused id.

    It must not occur inside any candidate, or a beam could not tell "item ends" from "item goes on".
    """
    used = np.unique(np.concatenate([np.asarray(c, dtype=np.int64) for c in candidate_ids]))
    if chosen is not None:
        if not 0 <= chosen < vocab or chosen in used:
            raise TaskError(f"end marker token {chosen} is outside the vocabulary of {vocab} or occurs inside a "
                            "candidate", where="end_id / marker_id", fix="pass a token id that no label contains")
        return int(chosen)
    eos = getattr(model.config, "eos_token_id", None)
    if isinstance(eos, int) and 0 <= eos < vocab and eos not in used:
        return eos
    free = np.setdiff1d(np.arange(min(vocab, len(used) + 1)), used)  # never empty: one more id than used
    return int(free[0])


def _greedy_scores(step_scores: tuple[torch.Tensor, ...], generated: torch.Tensor, marker: int) -> torch.Tensor:
    """Total score of greedy sequences: the processed log-prob of each chosen token up to the first marker."""
    chosen = torch.stack([s.gather(1, generated[:, t:t + 1]).squeeze(1) for t, s in enumerate(step_scores)], 1)
    is_end = (generated[:, : chosen.shape[1]] == marker).long()
    before_end = (is_end.cumsum(1) - is_end) == 0  # steps up to and including the first marker
    return torch.where(before_end, chosen, torch.zeros_like(chosen)).sum(1)


def _finished_items(trie: ItemTrie, generated: torch.Tensor, seq_scores: torch.Tensor, marker: int):
    """Item index of each returned sequence (-1 for filler beams) and its score."""
    nodes = torch.zeros(generated.shape[0], dtype=torch.long, device=generated.device)
    item = torch.full_like(nodes, -1)
    done = torch.zeros_like(nodes, dtype=torch.bool)
    for t in range(generated.shape[1]):  # a few steps over all rows at once
        tok = generated[:, t]
        ends = ~done & (tok == marker) & (nodes >= 0)
        item = torch.where(ends, trie.terminal_item[nodes.clamp(min=0)], item)
        done |= tok == marker
        nodes = torch.where(done, nodes, trie.step(nodes, tok))
    # filler beams carry -inf / -1e9-penalised scores; a real item's log-prob is far above -1e8
    valid = (item >= 0) & (seq_scores > -1e8)
    return torch.where(valid, item, torch.full_like(item, -1)), seq_scores


def _top_k_per_row(item: np.ndarray, score: np.ndarray, indices: np.ndarray, scores: np.ndarray,
                   rows: np.ndarray) -> None:
    """Write each row's best distinct valid items into indices/scores[rows] (vectorised over rows)."""
    b, m = item.shape
    k = indices.shape[1]
    score = np.where(item >= 0, score, -np.inf)
    row = np.repeat(np.arange(b), m)
    flat_item, flat_score = item.reshape(-1), score.reshape(-1)
    order = np.lexsort((-flat_score, row))  # by row, best first
    row, flat_item, flat_score = row[order], flat_item[order], flat_score[order]
    # first (best) occurrence of each (row, item); invalid ones dropped
    stride = max(int(item.max(initial=0)), 0) + 2
    _, first = np.unique(row * stride + flat_item + 1, return_index=True)
    keep = np.zeros(len(row), dtype=bool)
    keep[first] = True
    keep &= flat_item >= 0
    row, flat_item, flat_score = row[keep], flat_item[keep], flat_score[keep]
    order = np.lexsort((-flat_score, row))
    row, flat_item, flat_score = row[order], flat_item[order], flat_score[order]
    rank = np.arange(len(row)) - np.searchsorted(row, row, side="left")
    ok = rank < k
    indices[rows[row[ok]], rank[ok]] = flat_item[ok]
    scores[rows[row[ok]], rank[ok]] = flat_score[ok]
