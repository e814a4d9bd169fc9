"""``fit()``: the one training loop, explicit, on ``accelerate`` (no Trainer).

The same code runs on one CPU, one GPU, or N processes under ``accelerate launch`` (DDP, FSDP,
DeepSpeed through the configs in ``recipes/accelerate/``). Per optimizer step::

    for each of grad_accum micro-batches (accelerate deals disjoint batches to every process):
        loss = mean NLL over label tokens (prompt tokens carry -100, so only answers count)
        backward (gradients all-reduced on the last micro-batch only)
    clip grad norm -> optimizer step -> scheduler step -> zero grad
    every log_every: loss, lr, tokens/s, padding efficiency -> train_log.csv, TensorBoard, bar
    every eval_every: valid loss (+ evaluate_fn metrics) -> best weights, early stopping
    every save_every: checkpoint (weights, optimizer, scheduler, RNG, step) for --resume

Resuming reproduces the uninterrupted run: the batch order is a pure function of (seed, epoch),
the data position is global_step * grad_accum micro-batches into the epoch (skipped, not
re-drawn), and accelerate restores the torch/numpy/python RNG states dropout draws from.

Ctrl-C sets a flag; at the next step boundary every process agrees to stop, saves a
checkpoint, and ``fit`` raises ``KeyboardInterrupt`` (the CLI exits 130). A second Ctrl-C
interrupts at once.

This module owns the loop itself (the optimizer, the schedule, resuming, evaluating, saving and
stopping); what it runs on is beside it: the processes in `evtlm.train.accelerator`, the batches
in `evtlm.train.fit_loaders`, the log rows, validation loss and `FitResult` in
`evtlm.train.fit_metrics`, the best weights in `evtlm.train.best_weights`. It must not build a
model, tokenize, or compute a task metric itself (``evaluate_fn`` does).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from evtlm.errors import TaskError
from evtlm.fsio import fsync_tree
from evtlm.recipe import TrainConfig
from evtlm.train.accelerator import _smallest_share, distributed_state, make_accelerator, resolve_mixed_precision
from evtlm.train.best_weights import _restore_best, _track_best, _trim_to_trainable
from evtlm.train.checkpoint import (TrainerState, TrainLog, agree, install_sigint, latest_checkpoint, plot_learning_curve,
                                    prune_checkpoints, restore_sigint, step_dir)
from evtlm.train.fit_loaders import make_loaders
from evtlm.train.fit_metrics import FitResult, _n_targets, _train_row, _valid_loss

__all__ = ["fit", "FitResult", "resolve_mixed_precision", "make_accelerator", "distributed_state"]

EvaluateFn = Callable[[torch.nn.Module], Mapping[str, float]]


def fit(
    model: torch.nn.Module,
    datasets: Mapping[str, Any],
    train_cfg: TrainConfig,
    run_dir: str | Path,
    evaluate_fn: EvaluateFn | None = None,
    collator: Callable[[list[dict]], dict[str, torch.Tensor]] | None = None,
    *,
    pad_id: int | None = None,
    metric_for_best: str = "valid_loss",
    greater_is_better: bool | None = None,
    resume: bool = False,
    keep_checkpoints: int = 2,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
    desc: str = "train",
    train_is_per_process: bool = False,
) -> FitResult:
    """Train ``model`` on ``datasets["train"]``; evaluate on ``datasets["valid"]`` if present.

    Rows need ``input_ids`` and ``labels`` (-100 = no loss). ``evaluate_fn(model)`` returns task
    metrics (e.g. ``{"roc_auc": 0.71}``) merged with ``valid_loss``; ``metric_for_best`` picks
    the one that selects the best weights and drives early stopping, in the direction
    ``greater_is_better`` gives (the task's own, `evtlm.tasks.greater_is_better`; it may be left
    out only for ``valid_loss``, which improves downwards). ``on_step(step)`` is
    called after every optimizer step (progress hooks, tests). The returned model holds the best
    evaluation's weights when evaluations ran.

    ``train_is_per_process``: ``datasets["train"]`` is already this process's share (its own
    tokenized shards, `evtlm.data.shard_prepare`), so its batches are not dealt out again across
    processes; every process runs as many batches per epoch as the smallest share has, so the
    gradient all-reduces stay in step.
    """
    from accelerate.utils import broadcast_object_list, send_to_device, set_seed
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    if greater_is_better is None:
        if metric_for_best != "valid_loss":
            raise ValueError(f"metric_for_best={metric_for_best!r} needs greater_is_better: the task says which way its "
                             "metrics improve (evtlm.tasks.greater_is_better)")
        greater_is_better = False
    set_seed(train_cfg.seed)  # python, numpy, torch (all devices): LoRA init is done before, dropout after
    distributed_state()  # the process state first, as the CLI makes it (DeepSpeed on CPU needs gloo named)
    acc = make_accelerator(train_cfg, run_dir)
    main = acc.is_main_process
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)

    # ---- data: seeded length-grouped (or plain) batches, padded or packed
    sampler, loader, valid_loader = make_loaders(model, datasets, train_cfg, collator, pad_id)

    # ---- optimizer over trainable parameters only (LoRA, new token rows; all in full fine-tuning)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]  # no weight decay on biases and LayerNorm gains
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": train_cfg.weight_decay}, {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
        lr=train_cfg.lr,
    )
    ds_plugin = getattr(acc.state, "deepspeed_plugin", None)
    if ds_plugin is not None:  # our loaders batch through a sampler (batch_size None): tell DeepSpeed the batch
        # all three, every fit: the plugin outlives an Accelerator, and a scratch base pretrained
        # first in the same process (another batch size) would leave its train_batch_size behind
        ds_plugin.deepspeed_config.update({
            "train_micro_batch_size_per_gpu": train_cfg.batch_size, "gradient_accumulation_steps": train_cfg.grad_accum,
            "train_batch_size": train_cfg.batch_size * train_cfg.grad_accum * acc.num_processes})
    if train_is_per_process:  # its own shards: batches are moved to the device here, not dealt out
        model, optimizer = acc.prepare(model, optimizer)
        batches_per_epoch = _smallest_share(acc, len(loader))
    else:
        model, optimizer, loader = acc.prepare(model, optimizer, loader)
        batches_per_epoch = len(loader)
    if valid_loader is not None:
        valid_loader = acc.prepare(valid_loader)

    # ---- schedule: steps per epoch count this process's micro-batches; a partial
    # accumulation group at the end of an epoch still makes an optimizer step.
    steps_per_epoch = math.ceil(batches_per_epoch / train_cfg.grad_accum)
    total_steps = train_cfg.max_steps or max(1, math.ceil(train_cfg.epochs * steps_per_epoch))
    warmup = math.ceil(train_cfg.warmup_ratio * total_steps)
    scheduler = acc.prepare(_scheduler(optimizer, train_cfg.schedule, warmup, total_steps))
    if ds_plugin is not None:
        # prepared without the model, DeepSpeed's prepare hands the scheduler back unregistered:
        # neither the engine's checkpoint nor save_state would hold its step
        acc.register_for_checkpointing(scheduler)
    # checkpoints hold trainable weights only; the frozen base comes from the recipe
    unwrapped = acc.unwrap_model(model)
    acc.register_save_state_pre_hook(lambda models, weights, _dir: _trim_to_trainable(unwrapped, weights))

    state = TrainerState(total_steps=total_steps)
    ckpt = latest_checkpoint(run_dir) if resume else None
    if ckpt is not None:
        # weights, optimizer, scheduler, RNG, scaler; trainable weights only (DeepSpeed's engine
        # loads its own checkpoint, frozen weights left out when saving: load_module_strict)
        acc.load_state(str(ckpt), **({"load_module_strict": False} if ds_plugin is not None else {"strict": False}))
        state = TrainerState.load(ckpt)
        state.total_steps = total_steps
        acc.print(f"resuming from {ckpt} (step {state.global_step}/{total_steps})")
    elif resume:
        acc.print(f"--resume: no checkpoint in {run_dir / 'checkpoints'}, starting from step 0")

    if main:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=state.global_step or None)
    bar = tqdm(total=total_steps, initial=state.global_step, desc=desc, disable=not (main and progress), dynamic_ncols=True)
    stop_requested = install_sigint()

    def evaluate() -> dict[str, float]:
        metrics = {"valid_loss": _valid_loss(model, valid_loader, acc)} if valid_loader is not None else {}
        if evaluate_fn is not None:
            model.eval()
            with torch.no_grad():
                extra = dict(evaluate_fn(acc.unwrap_model(model)))
            # every process ran the same evaluation; rank 0's numbers are the ones that count
            metrics.update(broadcast_object_list([extra])[0])
        if metrics and metric_for_best not in metrics:
            raise TaskError(f"metric_for_best {metric_for_best!r} is not among the evaluation metrics {sorted(metrics)}",
                            fix="pick one of those names")
        return metrics

    def save_checkpoint() -> None:
        directory = step_dir(run_dir, state.global_step)
        # DeepSpeed's engine writes its checkpoint itself (the pre-hook does not see it): frozen weights left out there
        acc.save_state(str(directory), **({"exclude_frozen_parameters": True} if ds_plugin is not None else {}))
        acc.wait_for_everyone()
        if main:
            fsync_tree(directory)  # every file on disk before the marker says the checkpoint is complete
            state.save(directory)
            prune_checkpoints(run_dir, keep_checkpoints)
        acc.wait_for_everyone()

    train_log = TrainLog(run_dir / "train_log.csv")  # appends; rewrites only for a new column

    def log_row(row: dict[str, Any]) -> None:
        state.history.append(row)
        if main:
            for key, value in row.items():
                if key not in ("step", "epoch") and value is not None:
                    tb.add_scalar(f"{desc}/{key}", value, row["step"])
            train_log.write(state.history)

    # ---- the loop
    start = time.perf_counter()
    window = {"loss": 0.0, "n": 0, "real": 0, "slots": 0, "targets": 0, "t": time.perf_counter()}
    totals = {"real": 0, "slots": 0}
    grad_norm = None
    epoch = state.global_step // steps_per_epoch
    try:
        while state.global_step < total_steps and not state.stopped_early:
            sampler.use_epoch(epoch)
            batches = loader
            skip = (state.global_step - epoch * steps_per_epoch) * train_cfg.grad_accum
            if train_is_per_process:  # the common number of batches, on this process's device
                batches = (send_to_device(b, acc.device) for b in itertools.islice(loader, skip, batches_per_epoch))
            elif skip:  # resuming mid-epoch: skip the micro-batches already trained on
                batches = acc.skip_first_batches(loader, skip)
            model.train()
            for batch in batches:
                real, slots = int(batch.pop("real_tokens")), int(batch.pop("slot_tokens"))
                batch.pop("n_examples", None)
                with acc.accumulate(model):  # no gradient all-reduce until the group's last batch
                    out = model(**batch, use_cache=False)
                    loss = out.loss  # mean NLL over label tokens
                    acc.backward(loss)  # divides by grad_accum
                    if acc.sync_gradients and train_cfg.max_grad_norm:
                        # a tensor, read at log time; DeepSpeed's engine clips itself and returns None
                        norm = acc.clip_grad_norm_(model.parameters(), train_cfg.max_grad_norm)
                        grad_norm = norm.detach() if isinstance(norm, torch.Tensor) else norm
                    optimizer.step()  # no-ops until the accumulation group is complete
                    if acc.sync_gradients:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                window["loss"] += loss.detach().float()
                window["targets"] += _n_targets(out, batch)
                window["n"] += 1
                window["real"] += real
                window["slots"] += slots
                if not acc.sync_gradients:
                    continue
                # -------- one optimizer step done
                state.global_step += 1
                step = state.global_step
                bar.update(1)
                if on_step is not None:
                    on_step(step)
                if step % train_cfg.log_every == 0 or step == total_steps:
                    row = _train_row(acc, window, step, step / steps_per_epoch, scheduler, grad_norm, totals)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{row['tokens_per_s']:.0f}")
                    log_row(row)
                if step % train_cfg.eval_every == 0 or step == total_steps:
                    metrics = evaluate()
                    if metrics:
                        log_row({"step": step, "epoch": round(step / steps_per_epoch, 4), **metrics})
                        _track_best(state, metrics[metric_for_best], greater_is_better, train_cfg, acc, model, run_dir)
                        if main:
                            bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
                if step % train_cfg.save_every == 0 or step == total_steps or state.stopped_early:
                    save_checkpoint()
                if agree(acc, stop_requested()):
                    if step % train_cfg.save_every:  # not saved just above
                        save_checkpoint()
                    acc.print(f"\ninterrupted: checkpoint saved at step {step}; continue with --resume")
                    raise KeyboardInterrupt
                if step >= total_steps or state.stopped_early:
                    break
            epoch += 1
    finally:
        restore_sigint()
        bar.close()
        if main:
            tb.close()
            if state.history:
                plot_learning_curve(state.history, run_dir / "learning_curve.png", metric_for_best)

    restored = _restore_best(acc, unwrapped, run_dir, state)
    acc.wait_for_everyone()
    return FitResult(
        global_step=state.global_step,
        total_steps=total_steps,
        best_metric=state.best_metric,
        best_step=state.best_step,
        metric_for_best=metric_for_best,
        stopped_early=state.stopped_early,
        restored_best=restored,
        train_seconds=time.perf_counter() - start,
        padding_efficiency=totals["real"] / max(totals["slots"], 1),
        history=state.history,
    )


# ------------------------------------------------------------------------------------ helpers
def _scheduler(optimizer, kind: str, warmup: int, total: int):
    from transformers import get_scheduler

    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[kind]
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)
