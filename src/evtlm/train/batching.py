"""Batches for causal-LM training: which examples go together, and how they become tensors.

Two decisions cost (or save) most of the compute on event text, whose examples vary a lot in
length (a user with 3 events next to one with 300):

- **which examples share a micro-batch** — :class:`GroupedBatchSampler`. ``length_grouped``
  sorts examples by length inside shuffled *mega-batches* (``mega`` micro-batches each) and then
  shuffles the resulting batches, so each batch holds similar lengths (little padding) while the
  order of batches stays random. ``plain`` is a seeded shuffle. Both are a pure function of
  ``(seed, epoch)``, which is what makes a resumed run see exactly the batches it would have seen.
- **how a micro-batch becomes tensors** — :class:`CausalCollator`. ``pad`` right-pads to the
  longest example. ``pack`` puts several examples end to end in one row (first-fit decreasing
  into rows as long as the longest example), restarts ``position_ids`` at 0 for every example and
  passes no attention mask: transformers >= 5 then derives a block-diagonal causal mask from the
  position resets (flash-attention varlen on GPUs that have it), so packed examples never attend
  to each other. The first label of every packed example is set to -100 so no token is ever
  predicted from the previous example's last token.

Both report ``real_tokens`` / ``slot_tokens``: padding efficiency = real / slots.

>>> rows = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4, 5], "labels": [-100, 5]}]
>>> b = CausalCollator(pad_id=0, mode="pad")(rows)
>>> b["input_ids"].tolist(), b["labels"].tolist(), b["attention_mask"].tolist()
([[1, 2, 3], [4, 5, 0]], [[-100, 2, 3], [-100, 5, -100]], [[1, 1, 1], [1, 1, 0]])
>>> p = CausalCollator(pad_id=0, mode="pack")(rows + [{"input_ids": [6], "labels": [6]}])
>>> p["input_ids"].tolist(), p["position_ids"].tolist(), p["labels"].tolist()
([[1, 2, 3], [4, 5, 6]], [[0, 1, 2], [0, 1, 0]], [[-100, 2, 3], [-100, 5, -100]])
>>> int(p["real_tokens"]), int(p["slot_tokens"])
(6, 6)
>>> s = GroupedBatchSampler([5, 1, 4, 2, 3, 6], batch_size=2, mode="length_grouped", seed=0, mega=3)
>>> sorted(sorted([5, 1, 4, 2, 3, 6][i] for i in b) for b in s)   # similar lengths together
[[1, 2], [3, 4], [5, 6]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

__all__ = ["GroupedBatchSampler", "CausalCollator", "example_lengths"]


def example_lengths(dataset: Any) -> np.ndarray:
    """Token count of every row of a datasets.Dataset (or list of dicts) with ``input_ids``."""
    if hasattr(dataset, "with_format"):
        # arrow list lengths, no Python loop over rows
        import pyarrow.compute as pc

        table = dataset.with_format("arrow")[:]["input_ids"] if len(dataset) else []
        return np.asarray(pc.list_value_length(table), dtype=np.int64) if len(dataset) else np.zeros(0, np.int64)
    return np.asarray([len(r["input_ids"]) for r in dataset], dtype=np.int64)


class GroupedBatchSampler:
    """Yields lists of example indices, one list per micro-batch; order depends on (seed, epoch).

    Call ``use_epoch(e)`` before iterating (``fit`` does). ``accelerate`` wraps this sampler to deal the
    batches out to processes, so every rank gets different batches of the same epoch order.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        mode: Literal["length_grouped", "plain"] = "length_grouped",
        seed: int = 0,
        mega: int = 50,
        drop_last: bool = False,
    ) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.mode = mode
        self.seed = int(seed)
        self.mega = int(mega)
        self.drop_last = drop_last  # read by accelerate's BatchSamplerShard
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def use_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields.

        Deliberately not named ``set_epoch``: accelerate calls ``set_epoch`` with its own count
        of iterations of a DataLoader, which restarts at 0 on the fresh loader a resumed run
        builds, and would replay epoch 0's order.
        """
        self.epoch = int(epoch)

    def batches(self) -> list[list[int]]:
        """This epoch's micro-batches (a pure function of seed and epoch)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        if self.mode == "length_grouped":
            size = self.batch_size * self.mega
            chunks = [order[i : i + size] for i in range(0, len(order), size)]
            # longest first inside each mega-batch; stable sort keeps the shuffle among equals
            order = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks]) if chunks else order
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.mode == "length_grouped":
            # sorted batches would run from long to short inside each mega-batch: shuffle them
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self):
        return iter(self.batches())


class CausalCollator:
    """Turns rows with ``input_ids``/``labels`` into a padded or packed batch of tensors.

    Output keys: ``input_ids``, ``labels`` (-100 where no loss), ``attention_mask`` (pad mode) or
    ``position_ids`` (pack mode), plus the scalars ``real_tokens``, ``slot_tokens`` and
    ``n_examples`` for throughput and padding-efficiency logging (``fit`` pops them before the
    forward pass).
    """

    def __init__(self, pad_id: int, mode: Literal["pad", "pack"] = "pad", max_length: int | None = None) -> None:
        self.pad_id = int(pad_id)
        self.mode = mode
        self.max_length = max_length  # row capacity when packing (default: the longest example)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [list(r["input_ids"]) for r in rows]
        labels = [list(r["labels"]) if "labels" in r else list(r["input_ids"]) for r in rows]
        if self.mode == "pack":
            return self._pack(ids, labels)
        return self._pad(ids, labels)

    def _pad(self, ids: list[list[int]], labels: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(x) for x in ids)
        n = len(ids)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        lab = torch.full((n, width), -100, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, (x, y) in enumerate(zip(ids, labels)):  # per example in a batch, not per event
            input_ids[i, : len(x)] = torch.tensor(x)
            lab[i, : len(y)] = torch.tensor(y)
            mask[i, : len(x)] = 1
        return _batch(input_ids, lab, {"attention_mask": mask}, real=int(mask.sum()), n_examples=n)

    def _pack(self, ids: list[list[int]], labels: list[list[int]]) -> dict[str, torch.Tensor]:
        capacity = max(self.max_length or 0, max(len(x) for x in ids))
        # first-fit decreasing: longest examples first, each into the first row with room
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        rows: list[list[int]] = []
        room: list[int] = []
        for i in order:
            for r, free in enumerate(room):
                if free >= len(ids[i]):
                    rows[r].append(i)
                    room[r] -= len(ids[i])
                    break
            else:
                rows.append([i])
                room.append(capacity - len(ids[i]))
        width = max(capacity - free for free in room)
        n = len(rows)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        lab = torch.full((n, width), -100, dtype=torch.long)
        # padding continues the position count of the row's last example, so it forms no new
        # "sequence" of its own; its labels are -100 and real tokens never attend forward to it.
        pos = torch.zeros((n, width), dtype=torch.long)
        for r, members in enumerate(rows):
            at = 0
            for i in members:
                k = len(ids[i])
                input_ids[r, at : at + k] = torch.tensor(ids[i])
                y = torch.tensor(labels[i])
                y[0] = -100  # never predict an example's first token from the previous example
                lab[r, at : at + k] = y
                pos[r, at : at + k] = torch.arange(k)
                at += k
            if at < width:
                start = int(pos[r, at - 1]) + 1
                pos[r, at:] = torch.arange(start, start + width - at)
        return _batch(input_ids, lab, {"position_ids": pos}, real=sum(len(x) for x in ids), n_examples=len(ids))


def _batch(input_ids: torch.Tensor, labels: torch.Tensor, extra: dict[str, torch.Tensor], *, real: int,
           n_examples: int) -> dict[str, torch.Tensor]:
    """A collated batch: ids, labels, the layout's own tensor (attention mask or position ids) and
    the counts `fit` logs (real tokens against the slots they fill, examples)."""
    return {"input_ids": input_ids, "labels": labels, **extra, "real_tokens": torch.tensor(real),
            "slot_tokens": torch.tensor(input_ids.numel()), "n_examples": torch.tensor(n_examples)}
