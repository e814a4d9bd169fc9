"""Worker for test_faults: a process that kills itself with SIGKILL part-way through (imported,
not run, by pytest).

SIGKILL, not an exception: no ``finally`` block, no atexit handler, no flush runs, as when the
machine or the scheduler kills a job. Modes:

- ``fit OUT STEP``: train the tiny LoRA model of test_train into ``OUT`` and die just after
  optimizer step STEP (before that step's log, evaluation or checkpoint);
- ``fit-save OUT STEP``: die while saving the checkpoint of step STEP, after its weights and
  optimizer files are written but before ``trainer_state.json`` marks it complete;
- ``prepare CACHE USERS``: prepare a tiny synthetic-shop recipe into the cache ``CACHE`` and die
  after the first split's Arrow file of the new cache entry was written, before its marker.
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def fit_until(out: Path, step: int, in_save: bool) -> None:
    from test_faults import CFG, fault_data
    from test_train import tiny_lora_model

    from evtlm.train import checkpoint
    from evtlm.train.fit import fit

    if in_save:
        real_save = checkpoint.TrainerState.save

        def save(self, directory):
            if self.global_step == step:
                die()  # accelerate's files of this checkpoint are on disk, its marker is not
            real_save(self, directory)

        checkpoint.TrainerState.save = save
        fit(tiny_lora_model(), fault_data(), CFG, out, progress=False)
    else:
        fit(tiny_lora_model(), fault_data(), CFG, out, progress=False, on_step=lambda s: s == step and die())


def prepare_until_first_split(cache: Path, users: int) -> None:
    from test_faults import tiny_shop_recipe

    import evtlm.data.prepare as data

    real_write = data._write_arrow

    def write(table, path):
        real_write(table, path)
        die()  # one split of the entry written, the others and the marker not

    data._write_arrow = write
    data.prepare(tiny_shop_recipe(users), cache_dir=cache, progress=False)


if __name__ == "__main__":
    mode, target, arg = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    if mode in ("fit", "fit-save"):
        fit_until(target, arg, in_save=mode == "fit-save")
    elif mode == "prepare":
        prepare_until_first_split(target, arg)
    raise SystemExit(f"{mode}: the process should have been killed before reaching the end")
