"""What the training loop measures and returns: log rows, the validation loss, `FitResult`.

Owns the numbers of `evtlm.train.fit.fit`: a log row per ``log_every`` window (mean loss over every
process, lr, grad norm, tokens/s, supervised targets/s, padding efficiency, peak memory), the
token-weighted validation loss, the supervised targets of a micro-batch, and the run's summary.
Must not step the optimizer, save a checkpoint or choose the best weights
(`evtlm.train.best_weights`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class FitResult:
    global_step: int
    total_steps: int
    best_metric: float | None
    best_step: int | None
    metric_for_best: str
    stopped_early: bool
    restored_best: bool  # the model holds the best evaluation's weights, not the last step's
    train_seconds: float
    padding_efficiency: float  # real tokens / processed token slots over the whole run
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final_metrics(self) -> dict[str, float]:
        """The last evaluation row (valid loss and task metrics)."""
        evals = [r for r in self.history if r.get("valid_loss") is not None]
        return {k: v for k, v in (evals[-1] if evals else {}).items() if k not in ("step", "epoch")}


def _valid_loss(model, loader, acc) -> float:
    """Token-weighted mean NLL over the validation examples, summed over every process."""
    model.eval()
    total = torch.zeros(2, device=acc.device)  # [sum of token NLL, number of label tokens]
    with torch.no_grad():
        for batch in loader:
            for key in ("real_tokens", "slot_tokens", "n_examples"):
                batch.pop(key, None)
            if getattr(acc.unwrap_model(model), "is_stream", False):  # mean NLL of the answers it reads
                out = model(**batch)
                total += torch.stack([out.loss * out.n_targets, out.n_targets.to(out.loss.dtype)])
                continue
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
            # logits [B, T, V] at t predict token t+1
            target = batch["labels"][:, 1:]
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().transpose(1, 2), target, ignore_index=-100, reduction="sum"
            )
            total += torch.stack([nll, (target != -100).sum().to(nll.dtype)])
    total = acc.reduce(total, reduction="sum")
    model.train()
    return float(total[0] / total[1].clamp(min=1))


def _train_row(acc, window, step, epoch, scheduler, grad_norm, totals) -> dict[str, Any]:
    """Mean loss over the window (all processes), lr, tokens/s, supervised targets/s, padding
    efficiency and (on CUDA) this process's peak memory. The window's loss and targets are
    summed on the device and read here, once per log row: a ``float()`` per micro-batch would
    make the GPU wait for the host at every step."""
    numbers = torch.stack([torch.as_tensor(window[k], dtype=torch.float64).to(acc.device).reshape(())
                           for k in ("loss", "n", "real", "slots", "targets")])
    numbers = acc.reduce(numbers, reduction="sum")
    seconds = max(time.perf_counter() - window["t"], 1e-9)
    totals["real"] += int(numbers[2])
    totals["slots"] += int(numbers[3])
    row = {
        "step": step,
        "epoch": round(epoch, 4),
        "loss": float(numbers[0] / max(float(numbers[1]), 1)),
        "lr": float(scheduler.get_last_lr()[0]),
        "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
        "tokens_per_s": float(numbers[2]) / seconds,
        "targets_per_s": float(numbers[4]) / seconds,
        "padding_efficiency": float(numbers[2] / max(float(numbers[3]), 1)),
    }
    if torch.cuda.is_available() and acc.device.type == "cuda":
        row["peak_mem_gb"] = torch.cuda.max_memory_allocated(acc.device) / 2**30
    window.update(loss=0.0, n=0, real=0, slots=0, targets=0, t=time.perf_counter())
    return row


def _n_targets(out, batch) -> torch.Tensor:
    """Supervised targets of a micro-batch: the stream model counts its own; a causal LM's are
    the label tokens it predicts (every position after the first whose label is not -100)."""
    n = getattr(out, "n_targets", None)
    if n is not None:
        return n.detach()
    return (batch["labels"][:, 1:] != -100).sum()
