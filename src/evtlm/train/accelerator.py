"""The processes `fit` runs in: accelerate's process state and the `Accelerator` of a `TrainConfig`.

Owns the mixed-precision choice, CPU-only multi-process runs over gloo (also DeepSpeed on CPU),
the `Accelerator` `fit` trains with, and the common number of batches of per-process shards.
Must not build data, an optimizer or a checkpoint, and must not step a model
(`evtlm.train.fit`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from evtlm.recipe import TrainConfig


def resolve_mixed_precision(setting: str) -> str:
    """"auto" -> bf16 on a CUDA device with bf16 support, else "no" (CPU autocast is slow)."""
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def _cpu_processes() -> bool:
    """Several processes but no GPU: run them on CPU over gloo.

    ``accelerate launch`` starts CPU-only multi-process runs only through MPI; with a config of
    ``distributed_type: MULTI_GPU`` it uses torchrun, and this switch makes those processes
    talk over gloo when the machine has no GPU (recipes/accelerate/cpu_2proc.yaml, the tests).
    """
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available() and not _deepspeed_launch()


def _deepspeed_launch() -> bool:
    """Started by ``accelerate launch`` with a DeepSpeed config (``distributed_type: DEEPSPEED``)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def distributed_state():
    """accelerate's process state (rank, world size), created the way ``fit`` needs it."""
    from accelerate import PartialState

    if _deepspeed_launch() and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        # DeepSpeed on CPU: accelerate drops DeepSpeed when cpu=True (plain gloo DDP instead), and
        # with cpu=False and no GPU it finds no backend (one process each). Name gloo, put the
        # processes on the CPU: DeepSpeed's CPU accelerator then runs ZeRO over gloo.
        os.environ.setdefault("ACCELERATE_TORCH_DEVICE", "cpu")
        return PartialState(backend="gloo")
    return PartialState(cpu=_cpu_processes())


def make_accelerator(train_cfg: TrainConfig, run_dir: Path | None = None):
    from accelerate import Accelerator

    # The scheduler is stepped by hand once per optimizer step (step_scheduler_with_optimizer
    # off), so its length is counted in this process's optimizer steps, whatever the world size.
    return Accelerator(
        mixed_precision=resolve_mixed_precision(train_cfg.mixed_precision),
        gradient_accumulation_steps=train_cfg.grad_accum,
        step_scheduler_with_optimizer=False,
        project_dir=str(run_dir) if run_dir else None,
        cpu=_cpu_processes(),
    )


def _smallest_share(acc, batches: int) -> int:
    """The fewest batches any process has (every process must make the same number of steps)."""
    if acc.num_processes == 1:
        return batches
    counts = acc.gather(torch.tensor([batches], device=acc.device))
    return int(counts.min())
