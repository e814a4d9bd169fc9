"""Training throughput: ``evtlm.train.fit.fit`` against a plain Hugging Face ``Trainer`` + peft.

Same model, same examples, same number of optimizer steps, same LoRA, optimizer and learning rate:

- **examples**: ``evtlm.data.prepare.prepare`` on ``recipes/purchase.yaml`` with
  ``task.formulation=example`` (one prompt + answer per row, the rows a Trainer takes; the
  synthetic shop, GPT-2 BPE from ../shared when present), then a seeded subset of ``steps x batch_size`` training
  examples, so one epoch is exactly ``steps`` optimizer steps and both sides see every example
  once (in their own order).
- **model**: a small randomly initialised GPT-2 (``--shape``; the recipe's scratch size by
  default) with the tokenizer's vocabulary, LoRA from the recipe (r, alpha, dropout, targets).
- **evtlm**: ``fit()`` with the recipe's batching (length-grouped), no validation split.
- **Trainer**: ``transformers.Trainer`` + ``peft.get_peft_model``, ``DataCollatorForSeq2Seq``
  padding each batch to its longest row (labels padded with -100), with the Trainer's own length
  grouping on (``group_by_length=True``; ``train_sampling_strategy="group_by_length"`` in
  transformers 5), its strongest setting for padding, with mega-batches of 50 batches as on any
  real-sized epoch (`full_mega_batches`), no evaluation, no checkpoints.

Figures: **tokens/s** = real (non-pad) tokens / wall time of the whole ``fit()`` /
``trainer.train()`` call; **padding efficiency** = real tokens / token slots processed
(batch x padded length, summed); **achieved FLOP/s** = 6 x N x real tokens / s with N = the
base model's parameters that do matmul work per token (transformer blocks + the tied LM head;
position embeddings excluded), as a fraction of a bare float32 matmul's FLOP/s measured in the
same process just before training. (With a frozen base, LoRA training skips the weight
gradients of the base, so the work really done is nearer 4N per token: the 6N convention
overstates it by about 1.5x.)

Each side runs in its own process, ``--repeats`` times alternately (evtlm first in odd rounds,
the Trainer first in even ones, so load drifting during the run hits both); the **median** run
of each side counts, and the spread ((max - min) / median of tokens/s) is reported next to it.
A ratio within 1%, or within half the wider side's spread when that is larger (a lead the
machine's noise could make), is a tie (`bench.common.verdict`), never "met".

    python -m bench.train_speed                   # 24 steps x 8, median of 3 (make bench-train)
    python -m bench.train_speed --quick           # 8 steps x 8, one run per side (a smoke run)
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, TIE, model_section, row, run_child, write_result

NAME = "train_speed"
SHAPES = {"tiny": dict(n_layer=2, n_head=2, n_embd=64), "scratch": dict(n_layer=4, n_head=4, n_embd=128),
          "mini": dict(n_layer=4, n_head=4, n_embd=256), "small": dict(n_layer=12, n_head=12, n_embd=768)}


def matmul_flops(n: int = 1024, seconds: float = 1.5) -> float:
    """Best FLOP/s of a float32 ``n x n @ n x n`` matmul over ~``seconds`` (2 n^3 per product)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def build_model(vocab: int, shape: str, lora: dict[str, Any], pad_id: int, seed: int = 0):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from evtlm.train.modeling import apply_lora
    from evtlm.recipe import LoraConfig

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab, n_positions=512, pad_token_id=pad_id, **SHAPES[shape])
    base = GPT2LMHeadModel(cfg)
    n_matmul = sum(p.numel() for n, p in base.named_parameters() if "wpe" not in n)  # wte counted once: the tied head
    return apply_lora(base, LoraConfig(**lora)), n_matmul


def evtlm_side(data_dir: str, shape: str, lora: dict[str, Any], train: dict[str, Any], vocab: int, pad_id: int) -> dict[str, Any]:
    import datasets

    from evtlm.recipe import TrainConfig
    from evtlm.train.fit import fit

    ds = datasets.load_from_disk(data_dir)
    model, n_matmul = build_model(vocab, shape, lora, pad_id)
    peak = matmul_flops()
    cfg = TrainConfig(**train)
    run_dir = tempfile.mkdtemp(prefix="evtlm-bench-fit-")
    try:
        t0 = time.perf_counter()
        res = fit(model, {"train": ds}, cfg, run_dir, pad_id=pad_id, progress=False)
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    real = int(sum(len(x) for x in ds["input_ids"]))
    return {"seconds": seconds, "real_tokens": real, "slot_tokens": round(real / res.padding_efficiency),
            "padding_efficiency": res.padding_efficiency, "steps": res.global_step, "n_matmul_params": n_matmul,
            "matmul_flops": peak, "fit_train_seconds": res.train_seconds}


def trainer_side(data_dir: str, shape: str, lora: dict[str, Any], train: dict[str, Any], vocab: int, pad_id: int) -> dict[str, Any]:
    import datasets
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    ds = datasets.load_from_disk(data_dir)
    model, n_matmul = build_model(vocab, shape, lora, pad_id)
    peak = matmul_flops()

    counts = {"real": 0, "slots": 0}
    tok = AutoTokenizer.from_pretrained(str(Path(data_dir).parent / "tokenizer"))
    base = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100, return_tensors="pt")

    def collate(features):
        batch = base(features)
        counts["real"] += int(batch["attention_mask"].sum())
        counts["slots"] += batch["input_ids"].numel()
        return batch

    out = tempfile.mkdtemp(prefix="evtlm-bench-trainer-")
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=train["batch_size"], max_steps=train["max_steps"],
        learning_rate=train["lr"], warmup_steps=float(train["warmup_ratio"]), lr_scheduler_type=train["schedule"],
        weight_decay=train["weight_decay"], max_grad_norm=train["max_grad_norm"], seed=train["seed"],
        logging_steps=10**6, save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True,
        remove_unused_columns=False, dataloader_num_workers=0, use_cpu=True, **length_grouping(TrainingArguments),
    )
    trainer = full_mega_batches(Trainer)(model=model, args=args, train_dataset=ds, data_collator=collate)
    try:
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "real_tokens": counts["real"], "slot_tokens": counts["slots"],
            "padding_efficiency": counts["real"] / max(counts["slots"], 1), "steps": trainer.state.global_step,
            "n_matmul_params": n_matmul, "matmul_flops": peak}


def length_grouping(arguments_cls) -> dict[str, Any]:
    """The Trainer's length-grouped sampler, in this transformers' spelling (the reference at its best).

    transformers 4.x: ``group_by_length=True``; 5.x: ``train_sampling_strategy="group_by_length"``.
    Either way `LengthGroupedSampler` sorts mega-batches of 50 batches by length.
    """
    fields = {f.name for f in dataclasses.fields(arguments_cls)}
    if "group_by_length" in fields:
        return {"group_by_length": True}
    return {"train_sampling_strategy": "group_by_length"}


MEGA_BATCHES = 50  # batches sorted together: evtlm's GroupedBatchSampler default, and the Trainer's own on >= 200 batches


def full_mega_batches(trainer_cls):
    """``trainer_cls`` whose length-grouped sampler sorts mega-batches of 50 batches, as it does
    on any epoch of 200 batches or more.

    `transformers.trainer_pt_utils.get_length_grouped_indices` shrinks its mega-batches to a
    quarter of the epoch on small data (6 batches on a 24-batch epoch), which would cost the
    Trainer padding that it does not pay in real use; pinning ``mega_batch_mult`` to 50 (evtlm's
    own mega-batch) keeps its algorithm, lengths and seeded generator, and compares like with like.
    """
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

    class FullMegaSampler(torch.utils.data.Sampler):
        def __init__(self, inner: LengthGroupedSampler) -> None:
            self.inner = inner

        def __len__(self) -> int:
            return len(self.inner)

        def __iter__(self):
            return iter(get_length_grouped_indices(self.inner.lengths, self.inner.batch_size,
                                                   mega_batch_mult=MEGA_BATCHES, generator=self.inner.generator))

    class GroupedTrainer(trainer_cls):
        def _get_train_sampler(self, *args, **kwargs):
            sampler = super()._get_train_sampler(*args, **kwargs)
            assert isinstance(sampler, LengthGroupedSampler), f"expected the length-grouped sampler, got {sampler}"
            return FullMegaSampler(sampler)

    return GroupedTrainer


SIDES = {"evtlm": evtlm_side, "trainer": trainer_side}


def _child(argv: list[str]) -> None:
    import json

    from bench.common import child_main

    spec = json.loads(argv[-1])
    side = SIDES[spec.pop("side")]
    child_main(lambda **kw: side(**kw), [json.dumps(spec)])


def make_examples(out_dir: Path, n: int, seed: int = 0) -> tuple[int, int, dict[str, Any], dict[str, Any]]:
    """Prepare the purchase recipe, keep ``n`` seeded training rows (input_ids, labels) on disk."""
    import numpy as np

    from evtlm.data.prepare import prepare
    from evtlm.recipe import load_recipe

    model = model_section()
    over = [f"model.base={model['base']}"] + ([f"model.when_unavailable={model['when_unavailable']}"] if "when_unavailable" in model else [])
    over.append("task.formulation=example")  # prompt + answer rows: what a Trainer trains on (the recipe ships streams)
    recipe = load_recipe(REPO / "recipes" / "purchase.yaml", over)
    p = prepare(recipe, progress=False)
    train = p.datasets["train"]
    pick = np.sort(np.random.default_rng(seed).choice(len(train), min(n, len(train)), replace=False))
    train.select(pick).select_columns(["input_ids", "labels"]).save_to_disk(str(out_dir))
    p.tokenizer.save_pretrained(str(out_dir.parent / "tokenizer"))  # the Trainer side's collator pads with it
    pad = p.tokenizer.pad_token_id
    return len(p.tokenizer), pad, recipe.lora.model_dump(), recipe.train.model_dump()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        _child(argv)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="scratch")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs per side; the median counts")
    ap.add_argument("--quick", action="store_true", help="8 steps x 8, one run per side")
    ap.add_argument("--no-stream", action="store_true", help="skip the stream formulation's rows (bench.stream_train)")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.batch_size, args.repeats = min(args.steps, 8), min(args.batch_size, 8), 1

    tmp = Path(tempfile.mkdtemp(prefix="evtlm-bench-train-"))
    try:
        print("[train] preparing the purchase recipe's examples ...", file=sys.stderr, flush=True)
        vocab, pad, lora, train = make_examples(tmp / "data", args.steps * args.batch_size)
        train.update(max_steps=args.steps, batch_size=args.batch_size, grad_accum=1, eval_every=10**6,
                     save_every=10**6, log_every=10**6, early_stopping_patience=None)
        spec = {"data_dir": str(tmp / "data"), "shape": args.shape, "lora": lora, "train": train, "vocab": vocab, "pad_id": pad}
        runs: dict[str, list[dict[str, Any]]] = {"evtlm": [], "trainer": []}
        for i in range(args.repeats):
            for side in (("evtlm", "trainer") if i % 2 == 0 else ("trainer", "evtlm")):
                print(f"[train] {side} run {i + 1}/{args.repeats} ...", file=sys.stderr, flush=True)
                runs[side].append(run_child("bench.train_speed", {"side": side, **spec}, label=side))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for side_runs in runs.values():
        for r in side_runs:
            r["tokens_per_s"] = r["real_tokens"] / r["seconds"]
            r["flop_fraction"] = 6 * r["n_matmul_params"] * r["tokens_per_s"] / r["matmul_flops"]
    mid = {s: median_run(r) for s, r in runs.items()}
    tps = {s: m["tokens_per_s"] for s, m in mid.items()}
    spread = {s: run_spread(r) for s, r in runs.items()}
    assert all(r["steps"] == args.steps for rs in runs.values() for r in rs), "the two sides ran different step counts"
    setting = f"{args.steps} steps x {args.batch_size}, GPT-2 {args.shape} + LoRA r={lora['r']}"
    noise = max(spread.values()) / 2  # half the wider side's range: a lead inside it is not measured
    rows = [
        row("tokens/s (real tokens)", tps["evtlm"], tps["trainer"], ">= 1.0x", 1.0, noise=noise,
            note=f"{setting}; median of {args.repeats} runs per side, spread (max - min) / median: "
                 f"evtlm {spread['evtlm']:.1%}, Trainer {spread['trainer']:.1%}; a tie within "
                 f"+-{max(TIE, noise):.1%} (1% or half the wider spread)"),
        row("padding efficiency", mid["evtlm"]["padding_efficiency"], mid["trainer"]["padding_efficiency"], ">= 0.90",
            met=mid["evtlm"]["padding_efficiency"] >= 0.9,
            note="real tokens / processed token slots; both sides length-grouped (the Trainer: group_by_length)"),
        row("achieved FLOP/s / bare matmul FLOP/s", mid["evtlm"]["flop_fraction"], mid["trainer"]["flop_fraction"],
            "(report)", note=f"6 x {mid['evtlm']['n_matmul_params'] / 1e6:.2f}M params x tokens/s; matmul "
                             f"{mid['evtlm']['matmul_flops'] / 1e9:.1f} GFLOP/s in the same process (median run)"),
    ]
    details = {"runs": runs, "shape": args.shape, "steps": args.steps, "batch_size": args.batch_size, "vocab": vocab,
               "repeats": args.repeats, "tokens_per_s_spread": spread,
               "notes": ["FLOP/s counts 6N per real token (N: blocks + tied LM head); with a frozen base the work done "
                         "is nearer 4N, so the fraction is an upper-convention figure, comparable between the two sides",
                         "wall time of the whole fit() / trainer.train() call (fit() includes its final LoRA checkpoint)",
                         f"median of {args.repeats} alternating runs per side, each in a fresh process; the Trainer "
                         "runs with its length-grouped sampler (group_by_length); a ratio within 1% (or within half "
                         "the wider spread of the runs) is a tie"]}
    if args.no_stream:
        details["stream"] = "skipped: --no-stream"
    else:
        rows += stream_rows(details, quick=args.quick)
    path = write_result(NAME, "Training: tokens/s, padding efficiency, FLOP/s", rows, details)
    for r in rows:
        print(f"{r['figure']:<40} evtlm {r['evtlm']:>10.3f}  Trainer {r['reference']:>10.3f}  ratio {r['ratio']:.2f}")
    print(f"wrote {path}")
    return 0


def median_run(side_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median tokens/s (the lower middle one for an even count).

    >>> median_run([{"tokens_per_s": 3.0}, {"tokens_per_s": 1.0}, {"tokens_per_s": 2.0}])
    {'tokens_per_s': 2.0}
    """
    ranked = sorted(side_runs, key=lambda r: r["tokens_per_s"])
    return ranked[(len(ranked) - 1) // 2]


def run_spread(side_runs: list[dict[str, Any]]) -> float:
    """(max - min) / median of the runs' tokens/s: how far one run can be trusted.

    >>> round(run_spread([{"tokens_per_s": 95.0}, {"tokens_per_s": 100.0}, {"tokens_per_s": 105.0}]), 3)
    0.1
    """
    values = [r["tokens_per_s"] for r in side_runs]
    return (max(values) - min(values)) / statistics.median(values)


def stream_rows(details: dict, quick: bool) -> list[dict]:
    """Supervised targets/s: the stream formulation against one prompt per target (`bench.stream_train`)."""
    import json
    import os
    import subprocess

    from bench.common import SHARED_DATA

    if not (SHARED_DATA / "taobao" / "UserBehavior_head84k.csv").is_file():
        details["stream"] = "skipped: ../shared/data/taobao is absent"
        return []
    with tempfile.TemporaryDirectory(prefix="evtlm-bench-stream-train-") as tmp:
        out = Path(tmp) / "stream_train.json"
        size = ["--steps", "4", "--repeats", "1"] if quick else []
        subprocess.run([sys.executable, "-m", "bench.stream_train", *size, "--out", str(out)], cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=str(REPO / "src")), check=True)
        res = json.loads(out.read_text())
    details["stream"] = res
    ex = res["example"]
    setting = f"Taobao next item, item tokens, {res['steps']} steps x {res['batch_size']} rows, same GPT-2 and optimizer"
    return [
        row("targets/s, stream (full softmax) vs one prompt per target", res["stream (full softmax)"]["targets_per_s"],
            ex["targets_per_s"], "(report)", note=setting),
        row("targets/s, stream (4,096 sampled negatives) vs one prompt per target",
            res["stream (4,096 sampled negatives)"]["targets_per_s"], ex["targets_per_s"], "(report)",
            note="sampled softmax: the batch's answers plus 4,096 uniform items (train.negatives)"),
    ]


if __name__ == "__main__":
    raise SystemExit(main())
