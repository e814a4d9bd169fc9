"""The real pretrained base: SmolLM2-135M + LoRA with item tokens on the synthetic shop (slow).

Needs the converted base (``make base-smollm2``; skipped with that reason where it is absent).
`recipes/next_item_smollm2.yaml` on a tiny shop (60 users, 30 items), 8 optimizer steps of 8
windows x 64 tokens at lr 3e-3 (about 2 minutes on one CPU core, most of it the 135M-parameter
passes; at lr 1e-2 the fixed-batch loss rose, at 3e-3 with 4-window batches it barely moved),
checking what issue 14 asks of a pretrained base:

- the training loss falls (on a fixed batch of training windows, before and after);
- only the LoRA weights, the item-token rows (through peft's trainable_token_indices; tied to
  the output layer) and the stream read-out change: every base weight is bit-for-bit the
  converted base's;
- save then load (`load_run_model`) gives identical logits and read-out weights;
- ``evtlm predict`` on the run directory works offline (HF_HUB_OFFLINE=1, the base from the cache);
- ``evtlm export`` of it reloads as a plain LlamaForCausalLM with the run's LM logits, bit for bit.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from evtlm.text import bases

REPO = Path(__file__).resolve().parents[1]
SHOP = {"users": 60, "items": 30, "days": 21}
# where the base is, read once at collection: another module's fixture may point EVTLM_CACHE at
# its own folder for the rest of the session (tests/test_item_tokens.py), and the skip below was
# decided on this path
BASE = bases.base_dir("smollm2-135m")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not bases.is_installed("smollm2-135m"),
                       reason=f"the SmolLM2 base is not converted at {BASE} (run `make base-smollm2`)"),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Fine-tune once; keep the model as trained, the weights before training, and the run dir."""
    import evtlm.cli.finetune as ft
    import evtlm.train.fit as train
    from evtlm.recipe import load_recipe

    tmp = tmp_path_factory.mktemp("smollm2")
    cache = tmp / "cache"
    (cache / "bases").mkdir(parents=True)
    (cache / "bases" / "smollm2-135m").symlink_to(BASE)  # the converted base, nothing else shared
    mp = pytest.MonkeyPatch()
    mp.setenv("EVTLM_CACHE", str(cache))
    mp.setenv("HF_HUB_OFFLINE", "1")
    seen: dict = {}
    real_fit, real_eval = train.fit, ft._evaluate_run

    def fit(model, datasets, *args, **kwargs):  # the weights, rows and a fixed batch's loss before the first step
        from evtlm.train.stream_model import StreamCollator

        seen["before"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        seen["rows_before"] = model.lm.get_input_embeddings().weight.detach().clone()
        train_rows = datasets["train"]
        seen["batch"] = StreamCollator(kwargs["pad_id"])([train_rows[i] for i in range(min(8, len(train_rows)))])
        model.eval()  # no dropout: the same batch scored the same way before and after
        with torch.no_grad():
            seen["loss_before"] = float(model(**seen["batch"]).loss)
        return real_fit(model, datasets, *args, **kwargs)

    def evaluate(run_dir, recipe, prepared, model, state, **kwargs):  # the model as trained, before it is saved and reloaded
        seen["model"], seen["tokenizer"] = model, prepared.tokenizer
        return real_eval(run_dir, recipe, prepared, model, state, **kwargs)

    mp.setattr(train, "fit", fit)  # finetune imports it at call time
    mp.setattr(ft, "_evaluate_run", evaluate)
    overrides = [*(f"data.synthetic.{k}={v}" for k, v in SHOP.items()), "split.valid_days=4", "split.test_days=4",
                 "task.max_tokens=64", "task.examples_per_user=4", "train.max_steps=8", "train.batch_size=8", "train.lr=3e-3",
                 "train.warmup_ratio=0", "train.schedule=constant", "train.log_every=1", "train.eval_every=100",
                 "train.save_every=100", "train.max_eval_examples=16", "eval.fit_max_examples=16", "eval.max_examples=24",
                 "eval.baselines=[popularity,repeat]", f"output.dir={tmp / 'runs'}", "train.threads=1"]
    recipe = load_recipe(REPO / "recipes" / "next_item_smollm2.yaml", overrides)
    try:
        seen["run"] = ft.finetune(recipe, progress=False)
        mp.setattr(train, "fit", real_fit)
        mp.setattr(ft, "_evaluate_run", real_eval)
        seen["tmp"], seen["cache"] = tmp, cache
        # the module's tests load the run with this cache still set: the base resolves to the
        # converted one, whatever EVTLM_CACHE other modules left behind
        yield seen
    finally:
        mp.undo()


def test_the_run_used_the_converted_base_with_llama_lora(trained):
    run = json.loads((trained["run"] / "run.json").read_text())
    assert run["base"]["used"] == "smollm2-135m" and run["base"]["kind"] == "pretrained"
    assert run["model"]["format"] == "adapter" and run["model"]["base"] == "smollm2-135m"
    resolved = (trained["run"] / "recipe.resolved.yaml").read_text()
    assert "- q_proj" in resolved and "- down_proj" in resolved  # the architecture's targets, recorded


def test_loss_falls(trained):
    """On a fixed batch of 8 training windows (the logged per-step losses of 4-window batches
    swing by 2 nats from batch to batch, too noisy for 8 steps), and steps were logged."""
    with open(trained["run"] / "train_log.csv") as fh:
        assert sum(1 for r in csv.DictReader(fh) if r.get("loss")) == 8
    model = trained["model"].eval()
    with torch.no_grad():
        after = float(model(**trained["batch"]).loss)
    print(f"fixed-batch loss {trained['loss_before']:.3f} -> {after:.3f}")  # shown with pytest -s
    assert after < trained["loss_before"] - 0.1, (trained["loss_before"], after)


def test_only_lora_item_rows_and_the_read_out_change(trained):
    from evtlm.train.modeling import item_token_ids

    model, before = trained["model"], trained["before"]
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("lora_B" in k for k in changed) and any("trainable_tokens" in k for k in changed)
    base_weights = [k for k in changed if k.startswith("lm.") and "lora_" not in k and "trainable_tokens" not in k]
    assert not base_weights, base_weights[:5]  # every SmolLM2 weight as converted
    embed_keys = [k for k in after if "embed_tokens" in k]
    assert any(k.endswith("base_layer.weight") for k in embed_keys), embed_keys  # the frozen table was compared above
    # the rows the model reads (peft's trainable-token deltas on top of the frozen table), before and after
    rows_after = model.lm.get_input_embeddings().weight.detach()
    moved = torch.nonzero((rows_after != trained["rows_before"]).any(dim=1)).flatten().tolist()
    items = item_token_ids(trained["tokenizer"])
    assert moved and set(moved) <= set(items)  # only item rows moved (those the batches saw)


def test_save_then_load_gives_identical_logits(trained):
    from evtlm.train.run_dir import load_run_model

    model = trained["model"].eval()
    loaded, tok = load_run_model(trained["run"])
    probe = tok(" viewed <item_1001> . Seconds later viewed <item_1002> .", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model.lm(probe).logits, loaded.lm(probe).logits, rtol=0, atol=0)
    head, head2 = model.head_state(), loaded.head_state()
    assert head.keys() == head2.keys() and all(torch.equal(head[k], head2[k]) for k in head)


def test_predict_on_the_run_dir_works_offline(trained):
    tmp = trained["tmp"]
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, EVTLM_CACHE=str(trained["cache"]), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TQDM_DISABLE="1")
    shop = tmp / "shop.csv"
    sim = [str(bin_dir / "evtlm"), "simulate", *(a for k, v in SHOP.items() for a in (f"--{k}", str(v))), "--seed", "7",
           "--out", str(shop)]
    subprocess.run(sim, check=True, env=env, capture_output=True)
    done = subprocess.run([str(bin_dir / "evtlm"), "predict", "--run", str(trained["run"]), "--history", str(shop),
                           "--out", str(tmp / "preds.jsonl"), "--top-k", "5", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (tmp / "preds.jsonl").read_text().splitlines()]
    catalog = set(json.loads((trained["run"] / "label_items.json").read_text()))  # item ids of the label space
    assert len(records) == SHOP["users"]
    ok = [r for r in records if "error" not in r]
    assert ok and all(len(r["items"]) == 5 and {i["item_id"] for i in r["items"]} <= catalog for r in ok), ok[:2]


def test_export_reloads_with_plain_transformers(trained):
    """`evtlm export` of the SmolLM2 run: LoRA and item rows merged into a plain LlamaForCausalLM."""
    from transformers import AutoModelForCausalLM

    from evtlm.predict.export import export_run
    from evtlm.decode.inference import load_for_inference

    out = export_run(trained["run"], trained["tmp"] / "exported")
    plain = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True, trust_remote_code=False).eval()
    assert type(plain).__name__ == "LlamaForCausalLM" and not (out / "adapter_config.json").exists()
    inference, tok = load_for_inference(trained["run"])
    probe = tok(" viewed <item_1001> . Seconds later viewed <item_1002> .", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(plain(probe).logits, inference.lm(probe).logits, rtol=0, atol=0)
    assert "NOT the run's scores" in (out / "README.md").read_text()  # a stream run: the card says so
