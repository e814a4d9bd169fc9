"""The batches `fit` trains and validates on: model columns, the collator, seeded samplers, loaders.

Owns turning ``datasets["train"]`` / ``datasets["valid"]`` into `torch.utils.data.DataLoader`s:
only the columns the model consumes, the pad id, stream windows or padded / packed prompts,
length-grouped (or plain) batches seeded by ``train.seed``, a capped validation sample. Must not
touch the accelerator, the optimizer or the global RNG (`evtlm.train.fit`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from evtlm.errors import TaskError
from evtlm.recipe import TrainConfig
from evtlm.train.batching import CausalCollator, GroupedBatchSampler, example_lengths


def make_loaders(
    model: torch.nn.Module,
    datasets: Mapping[str, Any],
    train_cfg: TrainConfig,
    collator: Callable[[list[dict]], dict[str, torch.Tensor]] | None,
    pad_id: int | None,
) -> tuple[GroupedBatchSampler, torch.utils.data.DataLoader, torch.utils.data.DataLoader | None]:
    """``(sampler, loader, valid_loader)``: the training batches (`fit` sets the sampler's epoch)
    and the validation batches (None without a validation split)."""
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
    return sampler, loader, valid_loader


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
