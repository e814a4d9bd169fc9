"""Fault tests (issue 12): a kill, a full disk or an unwritable directory never corrupts a result.

- a training run killed with SIGKILL at a random step (or while writing a checkpoint) resumes
  to the weights of the uninterrupted run;
- `prepare` killed while writing its cache entry: the next run neither reuses the partial entry
  nor fails; a damaged committed entry is rebuilt;
- a full disk or a directory that cannot be written is one line naming the path (exit 2 from
  the CLI), and nothing half-written is read afterwards (cache entries, run directories,
  prediction files).

Tiny models and a tiny synthetic shop: seconds each (the kills run in a child process, so each
pays an interpreter start). ``EVTLM_FAULT_SEED`` changes the random kill steps.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import scrambled, tiny_lora_model, token_rows, trainable

from evtlm.train.checkpoint import latest_checkpoint
from evtlm.recipe import TrainConfig
from evtlm.train.fit import fit

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "fault_worker.py"
PURCHASE = REPO / "recipes" / "purchase.yaml"
FAULT_SEED = int(os.environ.get("EVTLM_FAULT_SEED", "1211"))
# 8 steps of 2 micro-batches; checkpoints at 3, 6 and 8; evaluations (and best weights) at 4 and 8
CFG = TrainConfig(max_steps=8, batch_size=4, grad_accum=2, lr=5e-3, eval_every=4, save_every=3, log_every=1,
                  warmup_ratio=0.2, early_stopping_patience=None)
SAVES = (3, 6, 8)


def fault_data() -> dict:
    return {"train": token_rows(40), "valid": token_rows(12, seed=1)}


SHOP = ["data.synthetic.items=40", "data.synthetic.days=28", "split.valid_days=5", "split.test_days=5",
        "task.max_tokens=96", "model.scratch.vocab_size=700"]  # test_evaluate's tiny shop


def tiny_shop_recipe(users: int = 80):
    """recipes/purchase.yaml on a tiny shop: prepare takes a second or two."""
    from evtlm.recipe import load_recipe

    return load_recipe(PURCHASE, [f"data.synthetic.users={users}", *SHOP])


def run_worker(*args: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS=str(torch.get_num_threads()),
               TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, str(WORKER), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def uninterrupted() -> dict[str, torch.Tensor]:
    """The trainable weights of the run nobody interrupted (the same seeds, data and settings)."""
    import tempfile

    model = tiny_lora_model()
    with tempfile.TemporaryDirectory() as tmp:
        fit(model, fault_data(), CFG, Path(tmp) / "run", progress=False)
    return trainable(model)


@pytest.mark.parametrize("mode", ["fit", "fit-save"])
def test_a_run_killed_at_a_random_step_resumes_to_the_uninterrupted_weights(mode, tmp_path, uninterrupted):
    """SIGKILL at a random step (``fit``) or while that step's checkpoint is half-written
    (``fit-save``); `fit(resume=True)` continues from the last complete checkpoint."""
    rng = random.Random(f"{FAULT_SEED}-{mode}")
    step = rng.randint(1, CFG.max_steps - 1) if mode == "fit" else rng.choice(SAVES)
    run = tmp_path / "run"
    proc = run_worker(mode, run, step)
    assert proc.returncode == -signal.SIGKILL, f"seed {FAULT_SEED}, step {step}: {proc.stderr[-2000:]}"
    before = [s for s in SAVES if s < step]
    found = latest_checkpoint(run)
    assert (found and int(found.name.split("-")[1])) == (before[-1] if before else None), f"step {step}"
    if mode == "fit-save":  # the half-written checkpoint is there, and is not taken for a complete one
        assert (run / "checkpoints" / f"step-{step:06d}").is_dir()

    resumed = scrambled(tiny_lora_model())  # the adapter must come from the checkpoint, not from init
    result = fit(resumed, fault_data(), CFG, run, progress=False, resume=True)
    assert result.global_step == CFG.max_steps
    got = trainable(resumed)
    assert got.keys() == uninterrupted.keys()
    worst = max(float((got[k] - uninterrupted[k]).abs().max()) for k in got)
    assert worst <= 1e-6, f"seed {FAULT_SEED}, {mode} at step {step}: weights differ by {worst:.3g}"
    logged = [r["step"] for r in result.history if r.get("loss") is not None]
    assert logged == list(range(1, CFG.max_steps + 1)), "a resumed log has every step once"
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-000006", "step-000008"]


# ---------------------------------------------------------------------------------- prepare
def _rows(prepared) -> dict[str, list]:
    """Every split's token rows as Python lists (copied out of the memory-mapped cache files)."""
    return {s: list(ds["input_ids"]) for s, ds in prepared.datasets.items()}


def test_prepare_killed_mid_write_is_neither_reused_nor_fatal(tmp_path):
    from evtlm.data import cache as datacache
    from evtlm.data.prepare import prepare

    cache = tmp_path / "cache"
    proc = run_worker("prepare", cache, 80)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    root = cache / "datasets"
    (partial,) = root.glob(".tmp-*")  # the dead writer's entry: one split written, no marker
    assert list(partial.glob("*.arrow")) and not (partial / datacache.MARKER).exists()
    assert not [p for p in root.iterdir() if not p.name.startswith(".")], "nothing was committed"

    first = prepare(tiny_shop_recipe(), cache_dir=cache, progress=False)
    assert not first.from_cache and datacache.is_complete(first.cache_path)
    assert not list(root.glob(".tmp-*")), "the partial entry of the dead writer is swept"
    second = prepare(tiny_shop_recipe(), cache_dir=cache, progress=False)
    assert second.from_cache and second.cache_path == first.cache_path
    fresh = prepare(tiny_shop_recipe(), cache_dir=tmp_path / "other", progress=False, use_cache=False)
    assert _rows(second) == _rows(fresh)


def test_a_damaged_cache_entry_is_rebuilt_not_trusted(tmp_path):
    from evtlm.data import cache as datacache
    from evtlm.data.prepare import prepare

    cache = tmp_path / "cache"
    want = _rows(prepare(tiny_shop_recipe(), cache_dir=cache, progress=False))
    entry = next(p for p in (cache / "datasets").iterdir() if not p.name.startswith("."))

    arrow = entry / "train.arrow"  # (1) a file cut short: its size no longer matches the marker
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    assert not datacache.is_complete(entry)
    again = prepare(tiny_shop_recipe(), cache_dir=cache, progress=False)
    assert not again.from_cache and _rows(again) == want

    (entry / datacache.MARKER).write_text("ok\n")  # (2) the marker of an older writer (no manifest)
    assert not prepare(tiny_shop_recipe(), cache_dir=cache, progress=False).from_cache

    meta = entry / "meta.json"  # (3) every size right, one file unreadable
    meta.write_text("x" * meta.stat().st_size)
    with pytest.warns(UserWarning, match="damaged"):
        rebuilt = prepare(tiny_shop_recipe(), cache_dir=cache, progress=False)
    assert not rebuilt.from_cache and _rows(rebuilt) == want
    assert prepare(tiny_shop_recipe(), cache_dir=cache, progress=False).from_cache


def full_disk(*args, **kwargs):
    """What ``write()`` raises when the device is full: no file name in the error."""
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_caching_is_one_line_and_leaves_no_entry(tmp_path, monkeypatch, capsys):
    import evtlm.data.prepare as data
    from evtlm.cli.main import main
    from evtlm.errors import StorageError

    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "_write_arrow", full_disk)
    with pytest.raises(StorageError, match=f"no space left on the device: {cache / 'datasets'}, writing the data cache"):
        data.prepare(tiny_shop_recipe(), cache_dir=cache, progress=False)
    assert not list((cache / "datasets").iterdir()), "no partial entry is left behind"
    assert main(["prepare", str(PURCHASE), "data.synthetic.users=80", *SHOP, "--cache-dir", str(cache), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert "no space left on the device" in line and str(cache) in line and "--no-cache" in line
    monkeypatch.undo()
    assert not data.prepare(tiny_shop_recipe(), cache_dir=cache, progress=False).from_cache


# ----------------------------------------------------------------------- run directories
def unwritable_dirs(tmp_path: Path) -> list[tuple[str, Path]]:
    """Paths under which nothing can be created: below a regular file (for every user), and
    below a 0o500 directory where permissions bind (not as root, where chmod blocks nothing)."""
    (tmp_path / "a_file").write_text("not a directory\n")
    out = [("below a file", tmp_path / "a_file" / "runs")]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        (locked / "probe").write_text("")
    except PermissionError:
        out.append(("below a read-only directory", locked / "runs"))
    else:  # root (or a filesystem without permissions): the probe got in
        (locked / "probe").unlink()
    return out


def test_an_unwritable_run_directory_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    from evtlm.cli.main import main

    monkeypatch.setenv("EVTLM_CACHE", str(tmp_path / "cache"))
    cases = unwritable_dirs(tmp_path)
    try:
        for what, path in cases:
            assert main(["finetune", str(PURCHASE), f"output.dir={path}", "--no-progress"]) == 2, what
            line = one_error_line(capsys)
            assert str(tmp_path) in line, (what, line)
            assert not (tmp_path / "cache").exists(), "it stops before any work"
    finally:
        (tmp_path / "locked").chmod(0o700)


def test_a_full_disk_in_finetune_and_predict_leaves_nothing_half_written_to_read(tmp_path, monkeypatch, capsys):
    """The disk fills while finetune writes run.json (the marker, written last) and while predict
    writes its output: one line each (exit 2); predict refuses the unfinished run; --resume
    finishes it; an older predictions file survives a failed predict whole."""
    import evtlm.predict.batch as predict_mod
    import evtlm.train.run_dir as run_dir_mod
    from evtlm.cli.main import main
    from evtlm.fsio import atomic_path
    from evtlm.ingest.simulate import simulate_shop, write_shop
    from evtlm.recipe import SyntheticConfig
    from test_evaluate import TINY, session_root

    monkeypatch.setenv("EVTLM_CACHE", str(session_root() / "cache"))  # tiny_run's caches: prepared once
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    real_write = run_dir_mod.atomic_write_text

    def marker_on_a_full_disk(path, text, encoding="utf-8"):
        if Path(path).name == "run.json":
            with atomic_path(path) as tmp:
                tmp.write_text(text[:20])  # a prefix made it to disk ...
                full_disk()  # ... then the device is full
        return real_write(path, text, encoding)

    args = ["finetune", str(PURCHASE), *TINY, f"output.dir={tmp_path / 'runs'}", "--no-progress"]
    run = tmp_path / "runs" / "purchase"
    history = tmp_path / "shop.csv"
    write_shop(simulate_shop(SyntheticConfig(users=12, items=20, days=14, seed=5)), history)
    try:
        monkeypatch.setattr(run_dir_mod, "atomic_write_text", marker_on_a_full_disk)
        assert main(args) == 2
        line = one_error_line(capsys)
        assert "no space left on the device" in line and str(run) in line
        assert any((run / d).is_dir() for d in ("adapter", "model")), "the weights were written ..."
        assert not (run / "run.json").exists(), "... but the run is not marked finished"
        assert not list(run.glob(".tmp-*")), "no temporary file is left"
        monkeypatch.setattr(run_dir_mod, "atomic_write_text", real_write)

        assert main(["predict", "--run", str(run), "--history", str(history), "--no-progress"]) == 2
        assert "not a finished run" in one_error_line(capsys)
        assert main(args + ["--resume"]) == 0  # from the last checkpoint: nothing to train, files written
        capsys.readouterr()
        assert json.loads((run / "run.json").read_text())["model"]["format"] in ("adapter", "model")

        out = tmp_path / "preds.jsonl"
        out.write_text('{"user_id": "old", "p_purchase": 0.5}\n')
        monkeypatch.setattr(predict_mod.RecordWriter, "_write", full_disk)
        assert main(["predict", "--run", str(run), "--history", str(history), "--out", str(out), "--no-progress"]) == 2
        line = one_error_line(capsys)
        assert "no space left on the device" in line and str(out) in line
        assert out.read_text() == '{"user_id": "old", "p_purchase": 0.5}\n', "the older file is untouched"
        assert not list(tmp_path.glob(".tmp-*")), "no partial predictions file is left"
    finally:
        torch.set_num_threads(torch_threads)
