"""What a training run leaves on disk while it runs: checkpoints and logs.

Layout under the run directory::

    checkpoints/step-000120/      accelerate.save_state (trainable weights only, optimizer,
                                  scheduler, RNG of every process, grad scaler) + trainer_state.json
    checkpoints/best/             trainable weights of the best evaluation + best.json
    train_log.csv                 one row per log / evaluation step
    tensorboard/                  the same numbers as TensorBoard events
    learning_curve.png            training loss, validation loss and the best-model metric

A checkpoint counts only once its ``trainer_state.json`` exists: that file is written last, so
a run killed while saving resumes from the previous complete checkpoint.

Only *trainable* weights are checkpointed (LoRA matrices, new token rows; everything in full
fine-tuning): the frozen base is rebuilt from the recipe, and a checkpoint of a LoRA run on GPT-2
stays a few MB instead of 500.

>>> step_dir(Path("runs/x"), 120).name
'step-000120'
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evtlm.fsio import atomic_write_text

__all__ = [
    "TrainerState",
    "step_dir",
    "latest_checkpoint",
    "prune_checkpoints",
    "trainable_state",
    "TrainLog",
    "plot_learning_curve",
    "install_sigint",
    "restore_sigint",
    "agree",
]

STATE_FILE = "trainer_state.json"


@dataclass
class TrainerState:
    """Everything besides tensors that a resumed run needs to continue exactly."""

    global_step: int = 0  # optimizer steps taken
    total_steps: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the last improvement (early stopping)
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # the rows of train_log.csv

    def save(self, directory: Path) -> None:
        # atomic and flushed (evtlm.fsio): the checkpoint is complete from here on
        atomic_write_text(directory / STATE_FILE, json.dumps(self.__dict__, indent=1, default=float))

    @classmethod
    def load(cls, directory: Path) -> TrainerState:
        return cls(**json.loads((directory / STATE_FILE).read_text()))


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:06d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    root = Path(run_dir) / "checkpoints"
    done = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file()] if root.is_dir() else []
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest complete step checkpoints (``best/`` is never touched).

    Incomplete ones (a run killed while saving) go too: they are never resumed from, and must
    not count among the ``keep`` newest and push a complete one out.
    """
    root = Path(run_dir) / "checkpoints"
    steps = sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    complete = [p for p in steps if (p / STATE_FILE).is_file()]
    kept = set(complete[-keep:]) if keep > 0 else set()
    for old in steps:
        if old not in kept:
            shutil.rmtree(old, ignore_errors=True)


def trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The entries of ``state`` (default: the model's state dict) whose parameter is trainable.

    Parameter names and state-dict keys coincide for ordinary and peft modules; with tied
    weights (GPT-2's ``wte``/``lm_head``) ``named_parameters`` lists the shared tensor once.
    """
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    state = model.state_dict() if state is None else state
    # keys of a DDP-wrapped state dict carry a "module." prefix
    return {k: v.detach().cpu().contiguous() for k, v in state.items() if k in names or k.removeprefix("module.") in names}


# ------------------------------------------------------------------------------------- logs
TRAIN_LOG_FIXED = ["step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "targets_per_s", "padding_efficiency", "valid_loss"]


class TrainLog:
    """``train_log.csv`` kept in step with a growing history: new rows are appended, and the
    file is rewritten only when a row brings a column it lacks (the first evaluation) or the
    history is not the one written so far (a resume). Rewriting every time cost O(rows) per log
    line: quadratic over a long epoch (17k rows at 177k steps).

    >>> import tempfile; path = Path(tempfile.mkdtemp()) / "train_log.csv"
    >>> log, history = TrainLog(path), [{"step": 10, "loss": 2.5}]
    >>> log.write(history); history.append({"step": 20, "loss": 2.0}); log.write(history)
    >>> history.append({"step": 20, "valid_loss": 1.9, "ndcg@10": 0.1}); log.write(history)   # a new column
    >>> path.read_text().splitlines()[0].split(",")[-1], len(path.read_text().splitlines())
    ('ndcg@10', 4)
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.columns: list[str] | None = None
        self.rows = 0

    def write(self, history: list[dict[str, Any]]) -> None:
        new = history[self.rows:]
        keys = {k for row in new for k in row}
        if self.columns is None or self.rows > len(history) or not keys <= set(self.columns) or not self.path.is_file():
            extra = sorted({k for row in history for k in row} - set(TRAIN_LOG_FIXED))
            self.columns, new, mode = TRAIN_LOG_FIXED + extra, history, "w"
        else:
            mode = "a"
        with open(self.path, mode, newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns)
            if mode == "w":
                writer.writeheader()
            for row in new:
                writer.writerow({k: _fmt(row.get(k)) for k in self.columns})
        self.rows = len(history)


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else value


def plot_learning_curve(history: list[dict[str, Any]], path: Path, metric: str | None = None) -> None:
    """Training loss and validation loss against step; the best-model metric on a second axis."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    train = [(r["step"], r["loss"]) for r in history if r.get("loss") is not None]
    valid = [(r["step"], r["valid_loss"]) for r in history if r.get("valid_loss") is not None]
    if train:
        ax.plot(*zip(*train), label="train loss", color="tab:blue")
    if valid:
        ax.plot(*zip(*valid), "o-", label="valid loss", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats/token)")
    handles, labels = ax.get_legend_handles_labels()
    if metric and metric != "valid_loss":
        points = [(r["step"], r[metric]) for r in history if r.get(metric) is not None]
        if points:
            ax2 = ax.twinx()
            ax2.plot(*zip(*points), "s--", color="tab:green", label=metric)
            ax2.set_ylabel(metric)
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, loc="best")
    ax.set_title("learning curve")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ------------------------------------------------------------------------- Ctrl-C -> checkpoint
def agree(acc, flag: bool) -> bool:
    """True on every process if any process saw Ctrl-C (all stop at the same step)."""
    if acc.num_processes == 1:
        return flag
    return bool(acc.reduce(torch.tensor([float(flag)], device=acc.device), reduction="sum").item() > 0)


_previous_handler: Any = None


def install_sigint() -> Callable[[], bool]:
    """First Ctrl-C: stop at the next step boundary after a checkpoint; second: stop now."""
    global _previous_handler
    flag = {"stop": False}

    def handler(signum, frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    try:
        _previous_handler = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (e.g. a notebook worker): Ctrl-C behaves as usual
        _previous_handler = None
    return lambda: flag["stop"]


def restore_sigint() -> None:
    if _previous_handler is not None:
        try:
            signal.signal(signal.SIGINT, _previous_handler)
        except ValueError:
            pass
