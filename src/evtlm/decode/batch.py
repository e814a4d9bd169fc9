"""Batching token-id prompts for decoding: left padding, position ids, eval mode, id checks.

Shared by :mod:`evtlm.decode.methods` and :mod:`evtlm.decode.beam`. Prompts are lists of token ids of
any length; a batch is left-padded (so every prompt's last token sits in the last column, where
the next-token logits are read) with an attention mask over real tokens and position ids counted
from each prompt's first real token: GPT-2's absolute position embeddings then see exactly what
they see for the unpadded prompt, so batched results equal one-at-a-time results.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from evtlm.errors import TaskError

__all__ = ["TokenLists", "left_pad", "inference", "vocab_size", "check_ids", "prompt_batches", "batch_bounds", "kv_layers"]

TokenLists = Sequence[Sequence[int]]
MAX_LENGTH_RATIO = 1.5  # longest / shortest prompt in one batch: bounds padding to a third of it


def left_pad(prompts: TokenLists, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ``input_ids``, ``attention_mask`` and ``position_ids`` [b, W].

    Position ids count real tokens only (0 at each prompt's first token), which is what makes a
    left-padded GPT-2 (absolute position embeddings) agree with the unpadded run.

    >>> ids, mask, pos = left_pad([[5, 6, 7], [9]], pad_id=0)
    >>> ids.tolist(), mask.tolist(), pos.tolist()
    ([[5, 6, 7], [0, 0, 9]], [[1, 1, 1], [0, 0, 1]], [[0, 1, 2], [0, 0, 0]])
    """
    lengths = np.array([len(p) for p in prompts], dtype=np.int64)
    width = int(lengths.max())
    ids = np.full((len(prompts), width), pad_id, dtype=np.int64)
    flat = np.concatenate([np.asarray(p, dtype=np.int64).reshape(-1) for p in prompts])
    rows = np.repeat(np.arange(len(prompts)), lengths)
    # right-aligned column of each token: width - length + position within the prompt
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(width - lengths, lengths)
    ids[rows, cols] = flat
    mask = (np.arange(width)[None, :] >= (width - lengths)[:, None]).astype(np.int64)
    pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(pos)


@contextmanager
def inference(model) -> Iterator[torch.device]:
    """eval mode (no dropout) and no autograd for the duration; the caller's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield next(model.parameters()).device
    finally:
        model.train(was_training)


def vocab_size(model) -> int:
    """Rows of the model's output vocabulary.

    ``config.vocab_size`` first: peft's trainable-token wrapper (item tokens) replaces the input
    embedding with a module that has no ``num_embeddings``.
    """
    config = getattr(model, "config", None)
    size = getattr(config, "vocab_size", None)
    if size:
        return int(size)
    return int(model.get_input_embeddings().weight.shape[0])


def check_ids(seqs: TokenLists, vocab: int, what: str) -> None:
    """Reject empty sequences and ids outside the model's vocabulary, naming the first offender."""
    lengths = np.array([len(s) for s in seqs])
    if (lengths == 0).any():
        i = int(np.flatnonzero(lengths == 0)[0])
        raise TaskError(f"{what} {i} is empty", where=what,
                        fix="every prompt needs at least one token" if what == "prompt" else "drop empty labels")
    flat = np.concatenate([np.asarray(s, dtype=np.int64).reshape(-1) for s in seqs])
    bad = (flat < 0) | (flat >= vocab)
    if bad.any():
        owner = int(np.searchsorted(np.cumsum(lengths), np.flatnonzero(bad)[0], side="right"))
        raise TaskError(f"{what} {owner} holds token id {int(flat[bad][0])}, outside the model's vocabulary of {vocab}",
                        where=what, fix="use the run's own tokenizer (a resized vocabulary needs the resized model)")


def batch_bounds(lengths: np.ndarray, batch_size: int, max_ratio: float = MAX_LENGTH_RATIO) -> list[int]:
    """Start offsets of batches over ascending ``lengths``: at most ``batch_size`` prompts, and a
    batch closes early when the next prompt is over ``max_ratio`` times its shortest one.

    Every padded token still costs attention and KV cache (beam search copies the whole cache at
    every step), so a batch of a 40-token and a 400-token prompt would be mostly padding. With
    many prompts, sorted neighbours have near-equal lengths and batches fill up to batch_size.

    >>> batch_bounds(np.array([10, 11, 12, 13, 40, 41]), batch_size=3)
    [0, 3, 4, 6]
    """
    bounds, start = [0], 0
    for i in range(1, len(lengths)):  # one pass over prompts (not events), cheap
        if i - start >= batch_size or lengths[i] > max_ratio * lengths[start]:
            bounds.append(i)
            start = i
    return bounds + [len(lengths)]


def prompt_batches(prompts: TokenLists, batch_size: int, pad_id: int, device) -> Iterator[tuple[np.ndarray, ...]]:
    """Batches of prompts of similar length (sorted, see :func:`batch_bounds`), with their original rows."""
    if batch_size < 1:
        raise TaskError(f"batch_size must be >= 1, got {batch_size}", fix="set decode.batch_size to 1 or more")
    lengths = np.array([len(p) for p in prompts])
    order = np.argsort(lengths, kind="stable")
    bounds = batch_bounds(lengths[order], batch_size)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        rows = order[start:stop]
        ids, mask, pos = left_pad([prompts[i] for i in rows], pad_id)
        yield rows, ids.to(device), mask.to(device), pos.to(device)


def kv_layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
    """(keys, values) per layer of a transformers DynamicCache, or None for caches we cannot copy."""
    layers = getattr(cache, "layers", None)
    if not layers or not all(hasattr(l, "keys") and hasattr(l, "values") for l in layers):
        return None
    return [(l.keys, l.values) for l in layers]
