"""The trainable weights a run keeps: checkpoints trimmed to them, the best evaluation's saved and restored.

Owns the save-state hook that leaves the frozen base out of every checkpoint (it comes from the
recipe), ``checkpoints/best`` (written atomically, on every improvement of ``metric_for_best``),
the early-stopping count, and loading the best weights back at the end of `evtlm.train.fit.fit`.
Must not decide when to evaluate or save a step checkpoint (`evtlm.train.fit`,
`evtlm.train.checkpoint`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from evtlm.errors import TaskError
from evtlm.fsio import atomic_path, atomic_write_text
from evtlm.train.checkpoint import trainable_state


def _trim_to_trainable(model: torch.nn.Module, weights: list[dict[str, torch.Tensor]]) -> None:
    for i, state in enumerate(weights):
        weights[i] = trainable_state(model, state)


def _track_best(state, value, greater, train_cfg, acc, model, run_dir) -> None:
    """Keep the best evaluation's trainable weights in checkpoints/best; count bad evaluations."""
    better = state.best_metric is None or (value > state.best_metric if greater else value < state.best_metric)
    if better:
        state.best_metric, state.best_step, state.bad_evals = float(value), state.global_step, 0
        # get_state_dict gathers sharded (FSDP/ZeRO-3) weights; every process must call it
        weights = trainable_state(acc.unwrap_model(model), acc.get_state_dict(model))
        if acc.is_main_process:
            from safetensors.torch import save_file

            best = Path(run_dir) / "checkpoints" / "best"
            best.mkdir(parents=True, exist_ok=True)
            with atomic_path(best / "trainable.safetensors") as tmp:  # a kill mid-write keeps the previous best whole
                save_file(weights, str(tmp))
            atomic_write_text(best / "best.json", f'{{"step": {state.global_step}, "metric": {float(value)!r}}}\n')
        acc.wait_for_everyone()
    else:
        state.bad_evals += 1
        patience = train_cfg.early_stopping_patience
        state.stopped_early = patience is not None and state.bad_evals >= patience


def _restore_best(acc, unwrapped, run_dir, state) -> bool:
    """Load the best evaluation's weights into the model when they are not the last step's."""
    path = Path(run_dir) / "checkpoints" / "best" / "trainable.safetensors"
    if state.best_step is None or state.best_step == state.global_step or not path.is_file():
        return False
    from safetensors.torch import load_file

    missing = unwrapped.load_state_dict(load_file(str(path), device="cpu"), strict=False).unexpected_keys
    if missing:
        raise TaskError(f"best checkpoint {path} does not match the model ({len(missing)} unknown tensors)",
                        fix="delete the run directory or train into a new one")
    acc.print(f"restored the best weights (step {state.best_step}, metric {state.best_metric:.4f})")
    return True
