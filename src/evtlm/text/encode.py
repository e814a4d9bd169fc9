"""Token ids for millions of examples without tokenizing a single prompt string.

Every event is verbalized once into a ``piece`` (" 3 minutes later added it to cart.") and a
``standalone`` form; each *distinct* piece is tokenized once, in batches, by the fast tokenizer.
A byte-level BPE splits text at the space before a word, so a history's ids are exactly the
concatenation of its pieces' ids: an example is then six contiguous slices of one token pool,

    actor | first kept event (standalone) | the other events' pieces | question | answer | eos

gathered for thousands of examples at once with `gather_ranges`. The budget ``max_tokens`` is
met by dropping the oldest events (`fit_budget`), never the answer.

>>> pool = np.arange(100, 110, dtype=np.int32)
>>> gather_ranges(pool, np.array([0, 7, 3]), np.array([2, 3, 0])).tolist()
[100, 101, 107, 108, 109]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from evtlm.errors import TaskError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BATCH = 20_000  # distinct texts per tokenizer call
GATHER_TOKENS = 1 << 21  # output tokens per gather block: bounds the int64 index temporaries


@dataclass
class Ragged:
    """Token sequences stored flat: sequence ``i`` is ``flat[offsets[i]:offsets[i + 1]]``."""

    flat: np.ndarray  # int32
    offsets: np.ndarray  # int64, len n + 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def tokenize_distinct(tokenizer: PreTrainedTokenizerBase, texts: np.ndarray | list[str]) -> Ragged:
    """Token ids of each text (no special tokens), batched through the Rust tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    flats, lengths = [], []
    texts = list(texts)
    for lo in range(0, len(texts), BATCH):
        batch = texts[lo : lo + BATCH]
        if backend is not None:
            ids = [e.ids for e in backend.encode_batch_fast(batch, add_special_tokens=False)]
        else:  # a slow (Python) tokenizer: correct, just slower
            ids = tokenizer(batch, add_special_tokens=False)["input_ids"]
        n = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flats.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(n.sum())))
        lengths.append(n)
    n = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    flat = np.concatenate(flats) if flats else np.zeros(0, np.int32)
    return Ragged(flat, np.concatenate([[0], np.cumsum(n)]).astype(np.int64))


def encode_values(tokenizer: PreTrainedTokenizerBase, values: pd.Series | np.ndarray) -> tuple[np.ndarray, Ragged]:
    """``(codes, distinct)``: each value's code into the tokenized distinct values."""
    # factorize the (Arrow-backed) strings as they are: an object copy of 5M strings costs ~0.5 GB
    codes, uniques = pd.factorize(values if isinstance(values, pd.Series) else pd.Series(values), sort=False)
    return codes.astype(np.int64), tokenize_distinct(tokenizer, [str(u) for u in uniques])


def gather_ranges(pool: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concat(pool[s:s + n] for s, n in zip(starts, lengths))``, vectorised in blocks."""
    starts = np.asarray(starts, dtype=np.int64).ravel()
    lengths = np.asarray(lengths, dtype=np.int64).ravel()
    out = np.empty(int(lengths.sum()), dtype=pool.dtype)
    # blocks of ~GATHER_TOKENS output tokens: the int64 index below never exceeds 8 * that bytes
    ends = np.cumsum(lengths)
    cuts = np.unique(np.searchsorted(ends, np.arange(GATHER_TOKENS, int(ends[-1]) if len(ends) else 0, GATHER_TOKENS)))
    pos = 0
    for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(starts)]])):
        s, n = starts[lo:hi], lengths[lo:hi]
        total = int(n.sum())
        # index of output token j = j + (range start - where the range begins in the output)
        begin = np.cumsum(n) - n
        idx = np.arange(total, dtype=np.int64) + np.repeat(s - begin, n)
        out[pos : pos + total] = pool[idx]
        pos += total
    return out


@dataclass
class EventTokens:
    """One pool holding every token an example can use, and where each part lives in it.

    Pool layout: pieces in event order | distinct standalones | distinct actors | distinct
    questions | distinct answers | eos. ``piece_cum[i]`` is where event ``i``'s piece starts, so
    the pieces of rows ``a:b`` are the slice ``piece_cum[a]:piece_cum[b]``.
    """

    pool: np.ndarray  # int32
    piece_cum: np.ndarray  # [N + 1] int64
    stand_start: np.ndarray  # [N] int64 (into pool)
    stand_len: np.ndarray  # [N]
    actor_start: np.ndarray  # [U]
    actor_len: np.ndarray  # [U]
    question_start: np.ndarray  # [n] per example
    question_len: np.ndarray
    answer_start: np.ndarray  # [n] per example
    answer_len: np.ndarray
    eos_pos: int


def build_event_tokens(tokenizer: PreTrainedTokenizerBase, piece: pd.Series, standalone: pd.Series,
                       actors: pd.Series, questions: pd.Series, answers: pd.Series) -> EventTokens:
    """Tokenize every distinct text once and lay the pool out (see `EventTokens`)."""
    p_code, p_tok = encode_values(tokenizer, piece)
    s_code, s_tok = encode_values(tokenizer, standalone)
    a_code, a_tok = encode_values(tokenizer, actors)
    q_code, q_tok = encode_values(tokenizer, questions)
    t_code, t_tok = encode_values(tokenizer, answers)
    p_len = p_tok.lengths[p_code]
    pieces = gather_ranges(p_tok.flat, p_tok.offsets[p_code], p_len)  # [sum p_len] in event order
    parts = [pieces, s_tok.flat, a_tok.flat, q_tok.flat, t_tok.flat, np.array([tokenizer.eos_token_id], np.int32)]
    base = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
    return EventTokens(
        pool=np.concatenate(parts),
        piece_cum=np.concatenate([[0], np.cumsum(p_len)]).astype(np.int64),
        stand_start=base[1] + s_tok.offsets[s_code], stand_len=s_tok.lengths[s_code],
        actor_start=base[2] + a_tok.offsets[a_code], actor_len=a_tok.lengths[a_code],
        question_start=base[3] + q_tok.offsets[q_code], question_len=q_tok.lengths[q_code],
        answer_start=base[4] + t_tok.offsets[t_code], answer_len=t_tok.lengths[t_code],
        eos_pos=int(base[5]),
    )


def _first_len(tok: EventTokens, s: np.ndarray, b: np.ndarray, user_first: np.ndarray) -> np.ndarray:
    """Tokens of the first kept event: its piece at the user's first event, else standalone."""
    s_safe = np.minimum(s, len(tok.stand_len) - 1)
    piece = tok.piece_cum[np.minimum(s + 1, len(tok.piece_cum) - 1)] - tok.piece_cum[s_safe]
    first = np.where(s == user_first, piece, tok.stand_len[s_safe])
    return np.where(s < b, first, 0)


def fit_budget(tok: EventTokens, ex: pd.DataFrame, user_first: np.ndarray, max_tokens: int) -> np.ndarray:
    """The first kept event row of each example: the oldest events go until the example fits.

    ``user_first`` is each example's user's first row (that event's piece needs no standalone
    form). Raises `TaskError` when even an empty history leaves no room for question and answer.
    """
    a, b = ex["hist_start"].to_numpy(), ex["hist_stop"].to_numpy()
    u = ex["user_code"].to_numpy()
    fixed = tok.actor_len[u] + tok.question_len + tok.answer_len + 1  # + eos
    room = max_tokens - fixed  # tokens left for the history
    if (room < 0).any():
        i = int(np.flatnonzero(room < 0)[0])
        raise TaskError(
            f"{int((room < 0).sum())} examples cannot fit their question and answer in task.max_tokens={max_tokens} "
            f"(e.g. user {ex['user_id'].iloc[i]!r}, answer {ex['target'].iloc[i]!r}: {int(fixed[i])} tokens)",
            where="task.max_tokens",
            fix="raise task.max_tokens, or shorten the item text (verbalize.item / item_template)",
        )

    def hist_len(s: np.ndarray) -> np.ndarray:
        rest = tok.piece_cum[b] - tok.piece_cum[np.minimum(s + 1, b)]
        return _first_len(tok, s, b, user_first) + rest

    # first guess: the latest s whose pieces fit, then step forward while a standalone is longer
    s = np.searchsorted(tok.piece_cum, tok.piece_cum[b] - room, side="left") - 1
    s = np.clip(s, a, b)
    s = np.where(hist_len(a) <= room, a, s)
    while True:
        over = np.flatnonzero((hist_len(s) > room) & (s < b))
        if len(over) == 0:
            return s
        s[over] += 1


def example_rows(tok: EventTokens, ex: pd.DataFrame, kept: np.ndarray, user_first: np.ndarray, rows: np.ndarray):
    """``(flat ids, row offsets, prompt lengths)`` for examples, history from row ``kept``.

    ``rows`` are the examples' positions in the table `build_event_tokens` saw (questions and
    answers are per example). A stream (pretrain) example has an empty question and answer:
    its row is history + eos.
    """
    b = ex["hist_stop"].to_numpy()
    q_start, q_len = tok.question_start[rows], tok.question_len[rows]
    t_start, t_len = tok.answer_start[rows], tok.answer_len[rows]
    u = ex["user_code"].to_numpy()
    n = len(ex)
    s_safe = np.minimum(kept, len(tok.stand_start) - 1)
    first_start = np.where(kept == user_first, tok.piece_cum[s_safe], tok.stand_start[s_safe])
    rest_start = tok.piece_cum[np.minimum(kept + 1, b)]
    starts = np.stack([tok.actor_start[u], first_start, rest_start, q_start, t_start, np.full(n, tok.eos_pos)], axis=1)
    lens = np.stack([tok.actor_len[u], _first_len(tok, kept, b, user_first), tok.piece_cum[b] - rest_start, q_len,
                     t_len, np.ones(n, np.int64)], axis=1)
    flat = gather_ranges(tok.pool, starts, lens)  # [n * 6 ranges], row-major: examples stay contiguous
    row_len = lens.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(row_len)]).astype(np.int64)
    return flat, offsets, lens[:, :4].sum(axis=1)


def masked_labels(flat: np.ndarray, offsets: np.ndarray, prompt_len: np.ndarray) -> np.ndarray:
    """Copy of ``flat`` with -100 on every row's first ``prompt_len`` tokens (prompt masking).

    An int8 +1/-1 marker at each prompt's start and end, cumulated, flags prompt tokens: one
    byte per token, where per-token int64 positions would cost 8 (50M tokens: 0.4 GB each).

    >>> masked_labels(np.arange(5, dtype=np.int32), np.array([0, 3, 5]), np.array([2, 1])).tolist()
    [-100, -100, 2, -100, 4]
    """
    starts = offsets[:-1]
    marks = np.zeros(len(flat) + 1, dtype=np.int8)
    np.add.at(marks, starts, 1)
    np.subtract.at(marks, starts + prompt_len, 1)
    labels = flat.astype(np.int32, copy=True)
    labels[np.cumsum(marks[:-1], dtype=np.int8).astype(bool)] = -100
    return labels


def list_array(flat: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """An Arrow ``list<int32>`` column over ``flat`` without copying it (``pa.array`` would:
    50M tokens are 0.2 GB a copy). 32-bit offsets while they fit, 64-bit beyond.

    >>> list_array(np.arange(5, dtype=np.int32), np.array([0, 2, 5])).to_pylist()
    [[0, 1], [2, 3, 4]]
    """
    flat = np.ascontiguousarray(flat, dtype=np.int32)
    values = pa.Array.from_buffers(pa.int32(), len(flat), [None, pa.py_buffer(flat)])
    if offsets[-1] < 2**31 - 1:
        off = np.ascontiguousarray(offsets, dtype=np.int32)
        return pa.ListArray.from_buffers(pa.list_(pa.int32()), len(off) - 1, [None, pa.py_buffer(off)], children=[values])
    off = np.ascontiguousarray(offsets, dtype=np.int64)
    return pa.LargeListArray.from_buffers(pa.large_list(pa.int32()), len(off) - 1, [None, pa.py_buffer(off)], children=[values])


def chunk_offsets(offsets: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut each row into pieces of at most ``size`` tokens: ``(new offsets, source row of each)``.

    >>> o, r = chunk_offsets(np.array([0, 5, 7]), 2)
    >>> o.tolist(), r.tolist()
    ([0, 2, 4, 5, 7], [0, 0, 0, 1])
    """
    lengths = np.diff(offsets)
    n_chunks = np.maximum(1, -(-lengths // size))  # ceil, at least one chunk per row
    row = np.repeat(np.arange(len(lengths)), n_chunks)
    k = np.arange(len(row)) - np.repeat(np.cumsum(n_chunks) - n_chunks, n_chunks)
    starts = offsets[:-1][row] + k * size
    return np.append(starts, offsets[-1]).astype(np.int64), row
