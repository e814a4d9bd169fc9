"""A token trie over a catalog of item strings, as tensors, and the beam-search processor on it.

`beam_search_items` (in :mod:`evtlm.decode.methods`) restricts ``model.generate``'s beam search to the
catalog: at every step each beam may only extend its prefix with a token that leads to at least
one (non-excluded) item, or close it with the *end marker* when its prefix is a whole item.
Nothing here runs Python per beam or per item: the trie is a handful of flat arrays built once
with numpy, and :class:`TrieLogitsProcessor` indexes them with every beam's trie node at once.

Layout (``n`` nodes, node 0 = root, ``E = n - 1`` edges, one per non-root node):

- ``edge_key[E]``: ``parent * stride + token``, sorted; a transition is one ``searchsorted``.
- ``edge_child[E]`` / ``edge_token[E]``: the child node and its token, in the same order, so
  the children of node ``s`` are the contiguous slice ``child_ptr[s]:child_ptr[s + 1]``.
- ``terminal_item[n]``: the item whose last token ends at this node, else -1 (an item that is a
  prefix of another, e.g. " Product 100" = [ĠProduct, Ġ100] inside " Product 1002" =
  [ĠProduct, Ġ100, 2], ends at an inner node: the end marker tells the two apart).
- ``item_path[C, L]``: the node after each token of each item (-1 past its end), used to count
  excluded items per subtree.

>>> trie = ItemTrie.build([[5, 7], [5, 7, 9], [6]])
>>> trie.n_nodes, trie.terminal_item.tolist()
(5, [-1, -1, 2, 0, 1])
>>> trie.subtree_count.tolist()        # root holds 3 items; node [5] holds 2; node [5, 7] holds 2
[3, 2, 1, 2, 1]
>>> trie.walk(torch.tensor([[5, 7], [6, 1], [5, 9]])).tolist()   # [6, 1] and [5, 9] are not prefixes
[3, -1, -1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import LogitsProcessor

from evtlm.errors import TaskError

__all__ = ["ItemTrie", "TrieLogitsProcessor"]


@dataclass
class ItemTrie:
    """The catalog's token trie as flat tensors (see the module docstring for the layout)."""

    n_items: int
    max_len: int
    stride: int  # > every token id in the catalog, so parent * stride + token is unique
    edge_key: torch.Tensor
    edge_child: torch.Tensor
    edge_token: torch.Tensor
    child_ptr: torch.Tensor
    terminal_item: torch.Tensor
    subtree_count: torch.Tensor
    item_path: torch.Tensor

    @property
    def n_nodes(self) -> int:
        return int(self.terminal_item.shape[0])

    @classmethod
    def build(cls, candidate_ids: Sequence[Sequence[int]]) -> ItemTrie:
        """Build the trie of ``candidate_ids`` (one token-id list per item, in label-space order).

        Loops over *depth* only (a few tokens), never over items. Two items with the same token
        sequence are ambiguous and rejected; so is an empty one.
        """
        lengths = np.array([len(c) for c in candidate_ids], dtype=np.int64)
        if len(lengths) == 0:
            raise TaskError("empty catalog: no candidates to decode", fix="pass at least one candidate item")
        if (lengths == 0).any():
            bad = np.flatnonzero(lengths == 0)[:5].tolist()
            raise TaskError(f"candidates {bad} have no tokens", where="candidate_ids",
                            fix="drop empty labels from the label space")
        n_items, max_len = len(lengths), int(lengths.max())
        tokens = np.full((n_items, max_len), -1, dtype=np.int64)
        flat = np.concatenate([np.asarray(c, dtype=np.int64) for c in candidate_ids])
        if flat.min() < 0:
            raise TaskError(f"negative token id {int(flat.min())} in candidate_ids", fix="pass tokenizer ids")
        # scatter the ragged lists into the padded [C, L] array without a per-item loop
        rows = np.repeat(np.arange(n_items), lengths)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        tokens[rows, cols] = flat
        stride = int(flat.max()) + 1

        item_path = np.full((n_items, max_len), -1, dtype=np.int64)
        parents, toks = [], []
        next_id = 1  # node 0 is the root
        for depth in range(max_len):
            has = lengths > depth
            # a node per distinct prefix of length depth + 1; its id is (parent node, token)
            parent = item_path[has, depth - 1] if depth else np.zeros(int(has.sum()), dtype=np.int64)
            key = parent * stride + tokens[has, depth]
            uniq, inverse = np.unique(key, return_inverse=True)
            item_path[has, depth] = next_id + inverse
            parents.append(uniq // stride)
            toks.append(uniq % stride)
            next_id += len(uniq)
        n_nodes = next_id
        parent = np.concatenate(parents)
        token = np.concatenate(toks)
        child = np.arange(1, n_nodes, dtype=np.int64)
        # np.unique sorts within a depth; sort all edges by (parent, token) so children are contiguous
        edge_key = parent * stride + token
        order = np.argsort(edge_key, kind="stable")
        edge_key, child, token, parent = edge_key[order], child[order], token[order], parent[order]
        child_ptr = np.searchsorted(parent, np.arange(n_nodes + 1), side="left")

        end_node = item_path[np.arange(n_items), lengths - 1]
        terminal_item = np.full(n_nodes, -1, dtype=np.int64)
        uniq_end, first, counts = np.unique(end_node, return_index=True, return_counts=True)
        if (counts > 1).any():
            clash = uniq_end[counts > 1][0]
            same = np.flatnonzero(end_node == clash)[:5].tolist()
            raise TaskError(f"candidates {same} have identical token ids {tokens[same[0], :lengths[same[0]]].tolist()}",
                            where="candidate_ids", fix="make the label strings distinct (they tokenize the same)")
        terminal_item[end_node] = np.arange(n_items)
        # items under each node: +1 on every node of every item's path, and C at the root
        subtree_count = np.bincount(item_path[item_path >= 0], minlength=n_nodes)
        subtree_count[0] = n_items

        t = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
        return cls(n_items, max_len, stride, t(edge_key), t(child), t(token), t(child_ptr),
                   t(terminal_item), t(subtree_count), t(item_path))

    def to(self, device: torch.device | str) -> ItemTrie:
        """The same trie with every tensor on ``device``."""
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return ItemTrie(**moved)

    def step(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Follow one token from each node: the child node, or -1 where there is no such edge."""
        key = nodes.clamp(min=0) * self.stride + tokens.clamp(min=0, max=self.stride - 1)
        pos = torch.searchsorted(self.edge_key, key).clamp(max=len(self.edge_key) - 1)
        ok = (nodes >= 0) & (tokens >= 0) & (tokens < self.stride) & (self.edge_key[pos] == key)
        return torch.where(ok, self.edge_child[pos], torch.full_like(nodes, -1))

    def walk(self, generated: torch.Tensor) -> torch.Tensor:
        """Trie node reached by each row of ``generated`` [R, T] from the root (-1: not a prefix)."""
        nodes = torch.zeros(generated.shape[0], dtype=torch.long, device=generated.device)
        for t in range(generated.shape[1]):  # T <= the longest item: a few steps, each over all rows
            nodes = self.step(nodes, generated[:, t])
        return nodes

    def excluded_masks(self, exclude: Sequence[Sequence[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per example: ``alive [b, n_nodes]`` (non-excluded items under each node) and ``banned [b, C]``."""
        b = len(exclude)
        banned = torch.zeros((b, self.n_items), dtype=torch.bool)
        counts = torch.tensor([len(e) for e in exclude], dtype=torch.long)
        if int(counts.sum()):
            items = torch.as_tensor(np.concatenate([np.asarray(list(e), dtype=np.int64) for e in exclude if len(e)]))
            if items.min() < 0 or items.max() >= self.n_items:
                bad = items[(items < 0) | (items >= self.n_items)][0].item()
                raise TaskError(f"exclude holds item index {bad}, outside the catalog of {self.n_items}",
                                where="exclude", fix="pass candidate indices in 0..C-1")
            banned[torch.repeat_interleave(torch.arange(b), counts), items] = True
        banned = banned.to(device)
        # subtract each banned item from every node on its path: [b, C] @ one-hot paths via scatter_add
        paths = self.item_path.to(device)
        ex, it = banned.nonzero(as_tuple=True)
        nodes = paths[it]  # [m, L]
        keep = nodes >= 0
        ex_rep = ex[:, None].expand_as(nodes)[keep]
        removed = torch.zeros((b, self.n_nodes), dtype=torch.long, device=device)
        removed.view(-1).scatter_add_(0, ex_rep * self.n_nodes + nodes[keep], torch.ones_like(ex_rep))
        removed[:, 0] = banned.sum(dim=1)
        alive = self.subtree_count.to(device)[None, :] - removed
        return alive, banned


class TrieLogitsProcessor(LogitsProcessor):
    """Masks every next token that leaves the catalog trie, for all beams at once.

    ``generate`` calls it with ``input_ids [b * num_beams, W + t]`` (left-padded prompts of width
    ``W`` plus ``t`` generated tokens) and the step's log-probs ``scores [b * num_beams, V]``. It
    re-walks each beam's ``t`` generated tokens from the root (stateless, so beam reordering
    needs no bookkeeping), then keeps the scores of the allowed children and of ``end_id`` at
    item boundaries; everything else becomes -inf. At a boundary the end marker costs
    ``scores[end_id]`` when ``score_end`` (the model was trained to emit it after the item) and
    nothing otherwise, so a finished beam's score is the item's total log-probability.
    With one beam (greedy search, which passes raw logits) scores are normalised to log-probs first.
    Rows whose prefix is not in the trie (filler beams when fewer prefixes than beams remain)
    get -inf everywhere; the caller drops their results.
    """

    def __init__(self, trie: ItemTrie, prompt_width: int, num_beams: int, end_id: int,
                 score_end: bool = False, exclude: Sequence[Sequence[int]] | None = None,
                 normalize: bool | None = None) -> None:
        self.trie, self.prompt_width, self.num_beams = trie, prompt_width, num_beams
        # beam search hands processors log-probs already; greedy search (1 beam) raw logits
        self.normalize = num_beams == 1 if normalize is None else normalize
        self.end_id, self.score_end = end_id, score_end
        self.alive = self.banned = None
        if exclude is not None and any(len(e) for e in exclude):
            self.alive, self.banned = trie.excluded_masks(exclude, trie.edge_key.device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        trie = self.trie
        if self.normalize:  # greedy search passes raw logits; a free end marker (0) needs log space
            scores = torch.log_softmax(scores.float(), dim=-1)
        rows_n = input_ids.shape[0]
        nodes = trie.walk(input_ids[:, self.prompt_width:])  # [R]
        example = torch.arange(rows_n, device=scores.device) // self.num_beams
        live = nodes >= 0
        safe = nodes.clamp(min=0)
        out = torch.full_like(scores, float("-inf"))

        # children of every live beam, flattened: beam r contributes count[r] (row, edge) pairs
        start = trie.child_ptr[safe]
        count = torch.where(live, trie.child_ptr[safe + 1] - start, torch.zeros_like(start))
        rows = torch.repeat_interleave(torch.arange(rows_n, device=scores.device), count)
        first_of_row = torch.repeat_interleave(count.cumsum(0) - count, count)
        offset = torch.arange(rows.shape[0], device=scores.device) - first_of_row  # 0..count[r]-1 within a row
        edge = start[rows] + offset
        tok = trie.edge_token[edge]
        if self.alive is not None:  # prune subtrees whose items are all excluded for this example
            keep = self.alive[example[rows], trie.edge_child[edge]] > 0
            rows, tok = rows[keep], tok[keep]
        out[rows, tok] = scores[rows, tok]

        # item boundaries: allow the end marker (unless this example excludes the item)
        item = trie.terminal_item[safe]
        boundary = live & (item >= 0)
        if self.banned is not None:
            boundary &= ~self.banned[example, item.clamp(min=0)]
        end_score = scores[:, self.end_id] if self.score_end else torch.zeros_like(scores[:, 0])
        out[:, self.end_id] = torch.where(boundary, end_score, out[:, self.end_id])
        return out
