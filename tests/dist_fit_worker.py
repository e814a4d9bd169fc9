"""Worker for test_train's two-process test, run by `accelerate launch` (imported, not run, by pytest).

Trains a tiny LoRA GPT-2 for one epoch of 32 examples (batch 4 per rank -> 4 steps) and writes,
per rank, which examples it trained on (each example's first token is its id) and a checksum of
its trainable weights.
"""

import json
import sys
from pathlib import Path

import datasets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train import tiny_lora_model  # noqa: E402

from evtlm.train.batching import CausalCollator  # noqa: E402
from evtlm.recipe import TrainConfig  # noqa: E402
from evtlm.train.fit import distributed_state, fit  # noqa: E402

ids = [[i] + [(i * 7 + k) % 60 + 1 for k in range(3 + i % 5)] for i in range(1, 33)]
data = {"train": datasets.Dataset.from_dict({"input_ids": ids, "labels": ids}),
        "valid": datasets.Dataset.from_dict({"input_ids": ids[:8], "labels": ids[:8]})}
seen: list[int] = []
base = CausalCollator(pad_id=0)


def recording_collator(rows):
    seen.extend(int(r["input_ids"][0]) for r in rows)
    return base(rows)


def main(out: Path) -> None:
    rank = distributed_state().process_index
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-2, eval_every=4, save_every=4, log_every=1, early_stopping_patience=None)
    model = tiny_lora_model(lora_dropout=0.0)
    fit(model, data, cfg, out / "run", collator=recording_collator, progress=False)
    (out / f"seen-{rank}.json").write_text(json.dumps(seen))
    checksum = {n: round(float(p.detach().double().sum()), 6) for n, p in model.named_parameters() if p.requires_grad}
    (out / f"weights-{rank}.json").write_text(json.dumps(checksum))


# only as a script: pytest --doctest-modules imports this module and must not train
if __name__ == "__main__":
    main(Path(sys.argv[1]))
