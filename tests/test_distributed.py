"""The whole `evtlm finetune` command under two CPU processes over gloo, data parallel
(`recipes/accelerate/cpu_2proc.yaml`), fully sharded (FSDP2, `recipes/accelerate/fsdp2_cpu_2proc.yaml`)
and DeepSpeed ZeRO-2 (`recipes/accelerate/deepspeed_zero2_cpu_2proc.yaml`, DeepSpeed's CPU accelerator
over gloo; skipped unless `pip install evtlm[deepspeed]`): the same losses and final metrics as one
process at the same global batch, the same saved weights, and a killed, resumed run that ends at the
uninterrupted run's weights. Slow (a few minutes on 2 cores): `make test-all`. DeepSpeed's first
run on a machine compiles a shared-memory op into ~/.cache/torch_extensions (about 80 s here, once).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "dist_finetune_worker.py"
pytestmark = pytest.mark.slow

TINY = [
    "data.synthetic.users=160", "data.synthetic.items=40", "data.synthetic.days=28", "split.valid_days=5",
    "split.test_days=5", "task.max_tokens=96", "task.formulation=example", "model.scratch.n_layer=1",
    "model.scratch.n_embd=32", "model.scratch.n_head=2", "model.scratch.vocab_size=700",
    "model.scratch.pretrain_epochs=0", "model.scratch.dropout=0.0", "train.max_steps=8", "train.log_every=1",
    "train.eval_every=100", "train.save_every=2", "train.batching=plain", "train.early_stopping_patience=null",
    "train.lr=3e-3", "eval.baselines=[]", "eval.max_examples=40", "eval.fit_max_examples=20",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIGS = {"ddp": "cpu_2proc.yaml", "fsdp2": "fsdp2_cpu_2proc.yaml", "deepspeed": "deepspeed_zero2_cpu_2proc.yaml"}
NO_DEEPSPEED = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                  reason="DeepSpeed is not installed (pip install 'evtlm[deepspeed]')")
STRATEGIES = ["ddp", "fsdp2", pytest.param("deepspeed", marks=NO_DEEPSPEED)]


def _assert_strategy_ran(run: Path, config: str) -> None:
    """Under a DeepSpeed launch the checkpoints are the engine's own: without this, a launch that
    quietly fell back to plain DDP (accelerate drops DeepSpeed for cpu=True) would pass too."""
    if config == "deepspeed":
        assert list(run.glob("checkpoints/step-*/pytorch_model/mp_rank_00_model_states.pt")), sorted(run.rglob("*"))


def _finetune(tmp_path: Path, name: str, processes: int, batch: int, kill_step: int = 0, resume: bool = False,
              extra: list[str] = (), config: str = "ddp"):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "EVTLM_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO / "src")}
    args = ["finetune", str(REPO / "recipes/purchase.yaml"), *TINY, *extra, f"train.batch_size={batch}",
            f"output.dir={tmp_path / 'runs'}", f"output.name={name}", "--no-progress", *(["--resume"] if resume else [])]
    if processes == 1:
        cmd = [sys.executable, str(WORKER), str(kill_step), *args]
    else:
        accelerate = Path(sys.executable).parent / "accelerate"
        cmd = [str(accelerate), "launch", "--config_file", str(REPO / "recipes/accelerate" / CONFIGS[config]),
               "--main_process_port", str(_port()), str(WORKER), str(kill_step), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)


def _losses(run: Path) -> list[float]:
    with open(run / "train_log.csv") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh) if r["loss"]]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted(run.rglob("*.safetensors")):
        if "checkpoints" not in path.relative_to(run).parts:
            out.update({f"{path.relative_to(run)}:{k}": v for k, v in load_file(path).items()})
    return out


@pytest.mark.parametrize("config", STRATEGIES)
def test_two_processes_reach_one_process_losses_at_the_same_global_batch(tmp_path, config):
    one = _finetune(tmp_path, "one", processes=1, batch=8)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _finetune(tmp_path, "two", processes=2, batch=4, config=config)
    assert two.returncode == 0, two.stderr[-3000:]
    _assert_strategy_ran(tmp_path / "runs" / "two", config)
    a, b = _losses(tmp_path / "runs" / "one"), _losses(tmp_path / "runs" / "two")
    assert len(a) == len(b) == 8
    # the same 8 examples per step (plain batching: rank r takes micro-batches r, r+2, ...). DDP
    # averages the halves' mean losses where one process averages over tokens; every purchase
    # prompt supervises the same two tokens (answer + eos), so the two agree up to float
    # rounding (measured: identical to 6 digits over all 8 steps)
    for x, y in zip(a, b):
        assert abs(x - y) <= 1e-4 * x, (a, b)
    # the final evaluation, its scoring shared by the two processes (evtlm.sharded), says the same
    m1, m2 = (json.loads((tmp_path / "runs" / r / "metrics.json").read_text()) for r in ("one", "two"))
    assert m1["n"] == m2["n"] > 0
    for key in ("roc_auc", "log_loss", "brier"):
        assert m2["methods"]["model"][key] == pytest.approx(m1["methods"]["model"][key], rel=1e-4, abs=1e-6), key
    assert "model calibrated" in m2["methods"]
    # the run directory holds whole tensors (FSDP: gathered from the shards), equal up to the
    # order of the gradient sums (measured: 2e-5 after 8 steps at lr 3e-3)
    w1, w2 = _weights(tmp_path / "runs" / "one"), _weights(tmp_path / "runs" / "two")
    assert w1.keys() == w2.keys() and w1
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=1e-4, msg=key)


@pytest.mark.parametrize("config", STRATEGIES)
def test_a_killed_two_process_run_resumes_to_the_uninterrupted_weights(tmp_path, config):
    full = _finetune(tmp_path, "full", processes=2, batch=4, config=config)
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _finetune(tmp_path, "cut", processes=2, batch=4, kill_step=5, config=config)  # last checkpoint: step 4
    assert killed.returncode != 0
    assert not (tmp_path / "runs" / "cut" / "run.json").exists()
    resumed = _finetune(tmp_path, "cut", processes=2, batch=4, resume=True, config=config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_strategy_ran(tmp_path / "runs" / "cut", config)
    want, got = _weights(tmp_path / "runs" / "full"), _weights(tmp_path / "runs" / "cut")
    assert want.keys() == got.keys() and want
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6, msg=key)
    assert _losses(tmp_path / "runs" / "cut")[-3:] == pytest.approx(_losses(tmp_path / "runs" / "full")[-3:], rel=1e-5)


def test_a_two_process_stream_run_shares_its_evaluation(tmp_path):
    """next_item streams: validation during training and the final test ranking are scored by
    both processes (each every other window) and gathered; the report covers every example."""
    env_args = ["task.name=next_item", "task.formulation=stream", "train.eval_every=4"]
    one = _finetune(tmp_path, "one", processes=1, batch=8, extra=env_args)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _finetune(tmp_path, "two", processes=2, batch=4, extra=env_args)
    assert two.returncode == 0, two.stderr[-3000:]
    m1, m2 = (json.loads((tmp_path / "runs" / r / "metrics.json").read_text()) for r in ("one", "two"))
    assert m1["n"] == m2["n"] > 0 and m2["formulation"] == "stream"
    with open(tmp_path / "runs" / "two" / "train_log.csv") as fh:
        assert any(r.get("ndcg@10") for r in csv.DictReader(fh))  # the in-training evaluation ran


def _gather_worker(rank: int, port: int, out: str) -> None:
    import numpy as np
    import torch.distributed as dist

    from evtlm.sharded import gather_parts, shard_scores

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        seen = []
        scores = shard_scores(7, lambda pos: (seen.extend(pos.tolist()), np.c_[pos, pos * 2.0])[1])
        parts = gather_parts({"rank": rank})
        Path(out, f"r{rank}.json").write_text(json.dumps({"seen": seen, "scores": scores.tolist(), "parts": parts}))
    finally:
        dist.destroy_process_group()


def test_shard_scores_splits_the_work_and_gathers_it_in_order(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_gather_worker, args=(_port(), str(tmp_path)), nprocs=2)
    r0, r1 = (json.loads((tmp_path / f"r{k}.json").read_text()) for k in (0, 1))
    assert r0["seen"] == [0, 2, 4, 6] and r1["seen"] == [1, 3, 5]
    assert r0["scores"] == r1["scores"] == [[i, 2.0 * i] for i in range(7)]
    assert r0["parts"] == r1["parts"] == [{"rank": 0}, {"rank": 1}]


def test_by_shard_each_process_trains_on_its_own_tokenized_shards(tmp_path):
    """data.by_shard under two processes: each trains on its own shards (half of them), the
    batches are not dealt out again, and the run ends with the model and baselines scored. The
    baselines are fitted shard by shard, each process reading its own shards (evtlm.data.history_shards):
    their figures equal a one-process run's over the same shards."""
    sys.path.insert(0, str(REPO / "src"))
    from evtlm.ingest.partition import partition_events
    from evtlm.recipe import load_recipe

    recipe = load_recipe(REPO / "recipes/purchase.yaml", TINY)
    part = partition_events(recipe.data, tmp_path / "parts", shards=4)
    extra = [f"data.path={part.path}", "data.by_shard=true", "eval.baselines=[prior,popularity,gbt]"]
    two = _finetune(tmp_path, "two", processes=2, batch=4, extra=extra)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "4 tokenized shards, training on 2 of them per process" in two.stdout
    assert len(_losses(tmp_path / "runs" / "two")) == 8
    one = _finetune(tmp_path, "one", processes=1, batch=8, extra=extra)
    assert one.returncode == 0, one.stderr[-3000:]
    m1, m2 = (json.loads((tmp_path / "runs" / r / "metrics.json").read_text())["methods"] for r in ("one", "two"))
    assert {"model", "prior", "popularity", "gbt", "model+gbt"} <= set(m2)
    for name in ("prior", "popularity", "gbt"):
        assert {k: v for k, v in m2[name].items() if k != "seconds"} == {k: v for k, v in m1[name].items() if k != "seconds"}, name
