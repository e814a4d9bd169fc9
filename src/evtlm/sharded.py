"""Model scoring shared across the processes of a distributed run, gathered on every process.

Under ``accelerate launch`` every process holds a replica of the model. Evaluation (during
training and after it) must not fall on rank 0 alone while the others wait at a barrier: on a
large catalog that is slow enough to hit the process group's timeout, and it wastes every other
device. `shard_scores` gives each process every ``world``-th item (positions ``rank, rank +
world, …``), scores them, and gathers the pieces back into the full array on every process.
Outside a process group (one process) it is a plain call.

Every process must make the same calls in the same order (a collective per call).

>>> import numpy as np
>>> shard_scores(5, lambda pos: pos * 10.0)          # one process: the whole range at once
array([ 0., 10., 20., 30., 40.])
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["rank_world", "shard_scores", "gather_parts"]


def rank_world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, ``(0, 1)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_scores(n: int, score: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``score(positions)`` over ``range(n)``, each process scoring its own share; the rows are
    returned in position order on every process. ``score`` returns one row per position."""
    rank, world = rank_world()
    if world == 1:
        return np.asarray(score(np.arange(n)))
    import torch.distributed as dist

    mine = np.arange(rank, n, world)
    out = np.asarray(score(mine)) if len(mine) else None
    parts: list = [None] * world
    dist.all_gather_object(parts, (mine, out))
    shaped = next((o for m, o in parts if o is not None), None)
    if shaped is None:  # n == 0
        return np.asarray(score(np.arange(0)))
    result = np.empty((n, *shaped.shape[1:]), dtype=shaped.dtype)
    for m, o in parts:
        if o is not None:
            result[m] = o
    return result


def gather_parts(part):
    """Every process's ``part`` (any picklable object), in rank order, on every process."""
    rank, world = rank_world()
    if world == 1:
        return [part]
    import torch.distributed as dist

    parts: list = [None] * world
    dist.all_gather_object(parts, part)
    return parts
