"""The base model, the adapter, and per-item tokens.

``load_base`` returns a causal LM and a :class:`BaseInfo` saying what was used and why (the run
card prints it):

1. ``model.base`` as a local directory or a Hugging Face id, read from local files first so an
   offline machine fails in milliseconds instead of retrying the network; safetensors only,
   never ``trust_remote_code``. A named base (``smollm2-135m``, `evtlm.text.bases`) is its directory
   in the evtlm cache, written once by ``make base-smollm2``.
2. If that fails: ``when_unavailable: error`` raises a one-line :class:`ModelUnavailableError`
   naming the fix; ``scratch`` builds a GPT-2 of ``model.scratch`` size over the tokenizer's
   vocabulary and pretrains it as a causal LM on the training event text (chunks of whole
   streams, the same ``fit`` loop). The result is an ordinary HF checkpoint cached under
   ``cache_dir`` by a key over the text, the tokenizer and the settings, so the next run with the
   same data reuses it.

``apply_lora`` wraps the model with a peft LoRA adapter on the architecture's projections
(`lora_targets`: GPT-2 ``c_attn``/``c_proj``/``c_fc``, Llama ``q_proj`` … ``down_proj``, unless
``lora.target_modules`` names others; GPT-2's ``Conv1D`` stores weights transposed:
``fan_in_fan_out`` is set for it) or, with ``lora.enabled: false``, leaves every
weight trainable. With ``model.item_tokens`` the new ``<item_…>`` rows of the embedding (tied to
the output layer in GPT-2) are trained through peft's ``trainable_token_indices``: only those
rows change, and they are saved inside the adapter.

>>> item_token("1002")
'<item_1002>'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from evtlm.text.bases import load_pretrained, missing_fix, resolve_base
from evtlm.errors import ModelUnavailableError
from evtlm.fsio import default_cache_dir, library_bars_off
from evtlm.recipe import LoraConfig, ModelConfig, ScratchConfig, TrainConfig
from evtlm.text.tokenization import (  # one cache root for tokenizers and bases; item tokens live with the tokenizer
    add_item_tokens,
    item_token,
    item_token_ids,
)

__all__ = [
    "BaseInfo",
    "load_base",
    "apply_lora",
    "lora_targets",
    "LORA_TARGETS",
    "build_scratch_model",
    "chunk_texts",
    "item_token",
    "add_item_tokens",
    "item_token_ids",
]



@dataclass
class BaseInfo:
    """Which base model a run used, and why (goes to the run card and metadata)."""

    used: str  # hub id, local path, or "scratch GPT-2 (…)"
    kind: str  # "pretrained" | "scratch"
    reason: str
    path: str | None = None  # where the weights were read from (cache dir for scratch)
    cached: bool = False  # scratch: reused from an earlier run
    n_params: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)  # scratch: steps, final loss, seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------- base model
def load_base(
    model_cfg: ModelConfig,
    tokenizer: Any,
    pretrain_texts: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    seed: int = 42,
) -> tuple[torch.nn.Module, BaseInfo]:
    """The base causal LM for ``model_cfg`` (see the module docstring for the order of attempts)."""
    dtype = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[model_cfg.dtype]
    where = resolve_base(model_cfg.base)  # a named base (smollm2-135m) is its directory in the evtlm cache
    model, problem = _load_pretrained(where, dtype)
    if model is not None:
        kind = ("named base, converted by `evtlm base install`" if where != model_cfg.base
                else "local directory" if Path(where).is_dir() else "Hugging Face id")
        info = BaseInfo(used=model_cfg.base, kind="pretrained", path=problem, reason=f"loaded {model_cfg.base!r} ({kind})")
    elif model_cfg.when_unavailable == "error":
        raise ModelUnavailableError(
            f"cannot load base model {model_cfg.base!r} ({problem})",
            where="model.base",
            fix=missing_fix(model_cfg.base) or "point model.base at a local directory with the model files, or set "
            "model.when_unavailable=scratch to pretrain a small GPT-2 on the event text",
        )
    else:
        if not pretrain_texts:
            raise ModelUnavailableError(
                f"base model {model_cfg.base!r} is unavailable ({problem}) and there is no training text to pretrain a scratch model on",
                where="model.when_unavailable=scratch", fix="check that the training split has events")
        model, info = _scratch_base(model_cfg, tokenizer, pretrain_texts, Path(cache_dir or default_cache_dir()), progress, seed)
        info.reason = f"{model_cfg.base!r} unavailable ({problem}); model.when_unavailable=scratch: " + info.reason
    _match_vocab(model, tokenizer)
    info.n_params = sum(p.numel() for p in model.parameters())
    info.config = {k: v for k, v in model.config.to_dict().items() if k in ("model_type", "n_layer", "n_head", "n_embd", "n_positions", "vocab_size", "num_hidden_layers", "hidden_size")}
    return model, info


def _load_pretrained(base: str, dtype: torch.dtype | None) -> tuple[torch.nn.Module | None, str]:
    """(model, where it came from) or (None, why not): `evtlm.text.bases.load_pretrained` with the
    causal-LM loader (safetensors only, never remote code)."""
    from transformers import AutoModelForCausalLM

    def load(source: str) -> torch.nn.Module:
        return AutoModelForCausalLM.from_pretrained(source, use_safetensors=True, trust_remote_code=False, dtype=dtype)

    return load_pretrained(base, load, "causal LM")


def _match_vocab(model: torch.nn.Module, tokenizer: Any) -> None:
    """Grow the embedding when the tokenizer has more tokens (e.g. added item tokens)."""
    if tokenizer is not None and len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)  # new rows start at the mean
    if tokenizer is not None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id


# ---------------------------------------------------------------------------------- from scratch
def build_scratch_model(scratch: ScratchConfig, tokenizer: Any, seed: int = 42) -> torch.nn.Module:
    """A randomly initialised GPT2LMHeadModel of the recipe's size over ``tokenizer``'s vocab.

    >>> from transformers import PreTrainedTokenizerFast
    >>> from tokenizers import Tokenizer, models
    >>> tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "<eos>": 1}, unk_token="a")), eos_token="<eos>")
    >>> m = build_scratch_model(ScratchConfig(n_layer=1, n_head=2, n_embd=8, n_positions=16), tok)
    >>> m.config.vocab_size, m.config.eos_token_id
    (2, 1)
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    if scratch.n_embd % scratch.n_head:
        raise ModelUnavailableError(f"model.scratch.n_embd={scratch.n_embd} is not divisible by n_head={scratch.n_head}",
                                    where="model.scratch", fix="make n_embd a multiple of n_head")
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    config = GPT2Config(
        n_layer=scratch.n_layer, n_head=scratch.n_head, n_embd=scratch.n_embd, n_positions=scratch.n_positions,
        vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        resid_pdrop=scratch.dropout, embd_pdrop=scratch.dropout, attn_pdrop=scratch.attn_dropout,
    )
    torch.manual_seed(seed)  # same size + seed -> same initial weights
    return GPT2LMHeadModel(config)


def chunk_texts(texts: Iterable[str], tokenizer: Any, block: int, batch: int = 1_000) -> np.ndarray:
    """Token ids of the texts, each followed by eos, concatenated and cut into ``block``-token rows
    ([rows, block] int32).

    The tail shorter than a block is dropped (at most ``block - 1`` tokens of the whole corpus).
    Texts are encoded ``batch`` at a time and kept as int32 arrays: the Python lists of token ids
    never outlive a batch (a corpus of 100M tokens costs 0.4 GB, not ten times that).

    >>> from transformers import PreTrainedTokenizerFast
    >>> from tokenizers import Tokenizer, models, pre_tokenizers
    >>> t = Tokenizer(models.WordLevel({"a": 0, "b": 1, "<eos>": 2}, unk_token="a")); t.pre_tokenizer = pre_tokenizers.Whitespace()
    >>> tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<eos>")
    >>> chunk_texts(["a b a", "b b"], tok, block=3).tolist()
    [[0, 1, 0], [2, 1, 1]]
    """
    eos = tokenizer.eos_token_id
    tail = [eos] if eos is not None else []
    texts = list(texts)
    parts = []
    for lo in range(0, len(texts), batch):
        encoded = tokenizer(texts[lo: lo + batch], add_special_tokens=False)["input_ids"]
        # one concatenation of per-text arrays (no loop over tokens)
        parts.append(np.concatenate([np.asarray(x + tail, dtype=np.int32) for x in encoded]))
    flat = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    n = len(flat) // block
    return flat[: n * block].reshape(n, block)


def _scratch_key(scratch: ScratchConfig, tokenizer: Any, texts: Sequence[str], seed: int) -> str:
    """Hash of everything the scratch base depends on: text, vocabulary, size, pretraining settings."""
    h = hashlib.sha256()
    h.update(json.dumps(scratch.model_dump(), sort_keys=True).encode())
    h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(f"seed={seed}".encode())
    for text in texts:
        h.update(text.encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


def _scratch_base(scratch_cfg: ModelConfig, tokenizer, texts, cache_dir: Path, progress: bool, seed: int):
    from transformers import AutoModelForCausalLM

    from evtlm.train.accelerator import distributed_state

    scratch = scratch_cfg.scratch
    size = f"{scratch.n_layer} layers, {scratch.n_embd} dim, {scratch.n_head} heads, vocab {len(tokenizer)}"
    key = _scratch_key(scratch, tokenizer, texts, seed)
    target = cache_dir / "bases" / f"scratch-gpt2-{key}"
    info = BaseInfo(used=f"scratch GPT-2 ({size})", kind="scratch", path=str(target), reason="")
    if (target / "model.safetensors").is_file():
        with library_bars_off():
            model = AutoModelForCausalLM.from_pretrained(target, use_safetensors=True, trust_remote_code=False)
        info.cached, info.reason = True, f"reused the scratch base pretrained on the same data and settings ({target})"
        meta = target / "evtlm_pretrain.json"
        info.pretrain = json.loads(meta.read_text()) if meta.is_file() else {}
        return model, info

    state = distributed_state()
    model = build_scratch_model(scratch, tokenizer, seed)
    summary: dict[str, Any] = {"texts": len(texts), "steps": 0}
    if scratch.pretrain_epochs > 0 or scratch.pretrain_max_steps:
        import datasets as hfds

        from evtlm.train.fit import fit

        blocks = chunk_texts(texts, tokenizer, min(scratch.pretrain_block, scratch.n_positions))
        if not len(blocks):
            raise ModelUnavailableError("the training text is shorter than one pretraining block", where="model.scratch.pretrain_block",
                                        fix="lower model.scratch.pretrain_block or use more data")
        from datasets.table import InMemoryTable

        from evtlm.text.encode import list_array

        ids = list_array(blocks.reshape(-1), np.arange(len(blocks) + 1, dtype=np.int64) * blocks.shape[1])
        train = hfds.Dataset(InMemoryTable(pa.table({"input_ids": ids, "labels": ids})))
        cfg = TrainConfig(
            seed=seed, epochs=max(scratch.pretrain_epochs, 1e-9), max_steps=scratch.pretrain_max_steps,
            batch_size=scratch.pretrain_batch_size, lr=scratch.pretrain_lr, warmup_ratio=0.05, schedule="cosine",
            batching="plain", eval_every=10**9, save_every=10**9, early_stopping_patience=None, log_every=10,
        )
        work = cache_dir / "bases" / f".partial-{key}-{os.getpid()}"
        result = fit(model, {"train": train}, cfg, work, progress=progress and state.is_main_process, desc="pretrain scratch base")
        last = [r["loss"] for r in result.history if r.get("loss") is not None]
        summary = {"texts": len(texts), "blocks": len(blocks), "block_tokens": len(blocks[0]), "steps": result.global_step,
                   "final_loss": last[-1] if last else None, "seconds": round(result.train_seconds, 1)}
        if state.is_main_process:
            shutil.copy(work / "train_log.csv", work.parent / f"pretrain-log-{key}.csv") if (work / "train_log.csv").is_file() else None
            shutil.rmtree(work, ignore_errors=True)
    info.pretrain = summary
    info.reason = f"pretrained a GPT-2 from scratch on the training event text ({summary.get('steps', 0)} steps), cached at {target}"
    if state.is_main_process:  # write to a temporary name, then rename: a half-written base is never reused
        from evtlm.fsio import fsync_tree

        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        with library_bars_off():
            model.save_pretrained(tmp, safe_serialization=True)
        (tmp / "evtlm_pretrain.json").write_text(json.dumps({**summary, "created": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))
        fsync_tree(tmp)  # on disk before the rename makes it the cached base
        if not target.exists():
            tmp.replace(target)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    state.wait_for_everyone()
    return model, info


# ---------------------------------------------------------------------------------- adapters
# The linear layers LoRA adapts when lora.target_modules is unset, by the config's model_type:
# every projection of attention and MLP (adapting all of them beats attention-only at the same r,
# QLoRA, Dettmers et al. 2023). GPT-2 fuses q/k/v into c_attn and names both output projections c_proj.
LLAMA_STYLE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "olmo", "olmo2", "smollm3"), LLAMA_STYLE),
}


def lora_targets(model: torch.nn.Module, configured: Sequence[str] | None = None) -> list[str]:
    """The modules LoRA adapts: ``configured`` (lora.target_modules) when given, else the
    architecture's own (`LORA_TARGETS` by ``config.model_type``; for an architecture not listed,
    whichever of those name sets the model has).

    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> tiny = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
    ...                                     num_attention_heads=2, num_key_value_heads=1, vocab_size=40))
    >>> lora_targets(tiny)
    ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']
    >>> lora_targets(tiny, ["q_proj", "v_proj"])
    ['q_proj', 'v_proj']
    """
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    if configured:
        missing = [t for t in configured if t not in names]
        if missing:
            raise ModelUnavailableError(
                f"lora.target_modules {missing} not found in {type(model).__name__}", where="lora.target_modules",
                fix="use module names of this model, e.g. " + ", ".join(sorted(n for n in names if n and not n.isdigit())[:12])
                + ", or leave lora.target_modules unset to take the architecture's own")
        return list(configured)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    known = LORA_TARGETS.get(model_type)
    candidates = [known] if known else list(dict.fromkeys(LORA_TARGETS.values()))
    for targets in candidates:
        present = [t for t in targets if t in names]
        if present:
            return present
    raise ModelUnavailableError(
        f"no default LoRA targets for {type(model).__name__} (model_type {model_type!r})", where="lora.target_modules",
        fix="set lora.target_modules to its linear layers, e.g. " + ", ".join(sorted(n for n in names if n and not n.isdigit())[:12]))


def apply_lora(model: torch.nn.Module, lora_cfg: LoraConfig, trainable_token_ids: Sequence[int] | None = None) -> torch.nn.Module:
    """A peft LoRA model (only adapter weights trainable) or, if disabled, the model fully trainable.

    The adapted modules are `lora_targets` (the architecture's own unless lora.target_modules
    names them). ``trainable_token_ids`` (item tokens): those embedding rows — and the tied
    output rows — are trained too, and nothing else of the embedding.
    """
    if not lora_cfg.enabled:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = lora_targets(model, lora_cfg.target_modules)
    conv1d = any(type(m).__name__ == "Conv1D" for m in model.modules())  # GPT-2 stores W transposed
    config = PeftLoraConfig(
        r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout, target_modules=targets,
        fan_in_fan_out=conv1d, bias="none", task_type="CAUSAL_LM",
        trainable_token_indices=list(trainable_token_ids) if trainable_token_ids else None,
    )
    return get_peft_model(model, config)
