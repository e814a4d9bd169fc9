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
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evtlm.train.batching import CausalCollator, GroupedBatchSampler, example_lengths
from evtlm.train.checkpoint import (
    TrainerState,
    agree,
    install_sigint,
    restore_sigint,
    latest_checkpoint,
    plot_learning_curve,
    prune_checkpoints,
    step_dir,
    trainable_state,
    TrainLog,
)
from evtlm.errors import TaskError
from evtlm.fsio import atomic_path, atomic_write_text, fsync_tree
from evtlm.recipe import TrainConfig

__all__ = ["fit", "FitResult", "resolve_mixed_precision", "make_accelerator", "distributed_state"]

EvaluateFn = Callable[[torch.nn.Module], Mapping[str, float]]
LOWER_IS_BETTER = ("loss", "brier", "ece", "perplexity")


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
    the one that selects the best weights and drives early stopping (lower is better for names
    containing loss/brier/ece unless ``greater_is_better`` says otherwise). ``on_step(step)`` is
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
        greater_is_better = not any(word in metric_for_best for word in LOWER_IS_BETTER)
    set_seed(train_cfg.seed)  # python, numpy, torch (all devices): LoRA init is done before, dropout after
    distributed_state()  # the process state first, as the CLI makes it (DeepSpeed on CPU needs gloo named)
    acc = make_accelerator(train_cfg, run_dir)
    main = acc.is_main_process
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)

    # ---- data: seeded length-grouped (or plain) batches, padded or packed
    train_ds = _model_columns(datasets["train"])
    if len(train_ds) == 0:
        raise TaskError("the training split has no examples", fix="widen the data window or lower task.min_history")
    pad_id = pad_id if pad_id is not None else _pad_id(model)
    stream = getattr(model, "is_stream", False)  # evtlm.train.stream_model.StreamLM: windows, not prompts
    if stream:
        from evtlm.train.stream_collate import StreamCollator

        collator = collator or StreamCollator(pad_id)
    collator = collator or CausalCollator(pad_id, mode="pack" if train_cfg.batching == "packed" else "pad")
    sampler = GroupedBatchSampler(
        example_lengths(train_ds),
        train_cfg.batch_size,
        mode="plain" if train_cfg.batching == "plain" else "length_grouped",
        seed=train_cfg.seed,
    )
    # A private generator: DataLoader iteration must not draw from the global torch RNG, or a
    # resumed run (which starts a new iterator mid-epoch) would shift every later dropout mask.
    loader = torch.utils.data.DataLoader(
        train_ds, batch_sampler=sampler, collate_fn=collator, generator=torch.Generator().manual_seed(train_cfg.seed)
    )
    valid_loader = None
    if datasets.get("valid") is not None and len(datasets["valid"]):
        valid = _model_columns(datasets["valid"])
        if train_cfg.max_eval_examples and len(valid) > train_cfg.max_eval_examples:
            pick = np.random.default_rng(train_cfg.seed).choice(len(valid), train_cfg.max_eval_examples, replace=False)
            valid = valid.select(np.sort(pick))
        eval_sampler = GroupedBatchSampler(example_lengths(valid), train_cfg.batch_size, "length_grouped", train_cfg.seed, mega=10**9)
        valid_loader = torch.utils.data.DataLoader(valid, batch_sampler=eval_sampler,
                                                   collate_fn=collator if stream else CausalCollator(pad_id, "pad"))

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
def _model_columns(ds: Any) -> Any:
    """Keep only what the model consumes (drops user_id, example_id, … before collation).

    Stream windows (`evtlm.data.stream`) keep their event and target lists too."""
    if hasattr(ds, "select_columns"):
        from evtlm.data.stream import STREAM_COLUMNS, is_stream_dataset

        wanted = STREAM_COLUMNS if is_stream_dataset(ds) else ("input_ids", "labels")
        return ds.select_columns([c for c in wanted if c in ds.column_names])
    return ds


def _pad_id(model: torch.nn.Module) -> int:
    cfg = getattr(model, "config", None)
    vocab = getattr(cfg, "vocab_size", None)
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and (vocab is None or value < vocab):
            return value
    return 0  # padded positions are masked and labelled -100: the value itself never matters


def _scheduler(optimizer, kind: str, warmup: int, total: int):
    from transformers import get_scheduler

    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[kind]
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total)


def _trim_to_trainable(model: torch.nn.Module, weights: list[dict[str, torch.Tensor]]) -> None:
    for i, state in enumerate(weights):
        weights[i] = trainable_state(model, state)


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
