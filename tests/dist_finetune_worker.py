"""Worker for test_distributed: ``evtlm finetune`` under ``accelerate launch`` (imported by no test).

    accelerate launch ... tests/dist_finetune_worker.py KILL_STEP finetune RECIPE overrides...

KILL_STEP 0 runs the command as it is; N > 0 kills rank 0 with SIGKILL just after optimizer step N
(no ``finally``, no flush: as when a node dies), and torchrun's agent then stops the other rank.
"""

import os
import signal
import sys


def main() -> int:
    kill_step, argv = int(sys.argv[1]), sys.argv[2:]
    if kill_step:
        import evtlm.train.fit as train

        real_fit = train.fit

        def fit(*args, **kwargs):
            rank = int(os.environ.get("RANK", "0"))
            kwargs["on_step"] = lambda step: step == kill_step and rank == 0 and os.kill(os.getpid(), signal.SIGKILL)
            return real_fit(*args, **kwargs)

        train.fit = fit  # evtlm.cli.finetune imports fit when it runs: it gets this one
    from evtlm.cli.main import main as evtlm_main

    return evtlm_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
