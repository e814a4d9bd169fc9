"""`evtlm export`: a run as a plain Hugging Face directory that gives the run's logits.

Run directories are built in-process from tiny models (a LoRA run with item tokens on a GPT-2
and on a Llama, a fully fine-tuned scratch run, a stream run), as `evtlm finetune` saves them.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evtlm.cli.main import main
from evtlm.predict.export import export_run
from evtlm.decode.inference import load_for_inference
from evtlm.train.modeling import add_item_tokens, apply_lora, build_scratch_model
from evtlm.recipe import LoraConfig, Recipe, dump_recipe
from evtlm.train.run_dir import load_run_model, save_model
from evtlm.train.fit import fit
from tests.test_bases import tiny_llama
from tests.test_modeling import CFG, TINY, rows, word_tokenizer

ITEMS = ["7", "8", "9"]
PROBE = torch.tensor([[2, 6, 19, 16, 5, 20, 21, 3]])  # words and the three item tokens (ids 19-21)


def write_run(run: Path, model, tok, info, formulation: str = "example") -> Path:
    """What `evtlm finetune` leaves: the weights, tokenizer, run.json, label space, resolved recipe."""
    meta = save_model(model, tok, run, info)
    (run / "run.json").write_text(json.dumps({"model": meta, "base": {"used": info.used, "kind": info.kind}}))
    (run / "label_space.json").write_text(json.dumps([f" <item_{i}>" for i in ITEMS]))
    recipe = Recipe.model_validate({"name": run.name, "task": {"name": "next_item", "formulation": formulation},
                                    "model": {"item_tokens": True}})
    (run / "recipe.resolved.yaml").write_text(dump_recipe(recipe))
    return run


def lora_run(tmp_path: Path, arch: str) -> Path:
    """LoRA + trainable item-token rows on a 'pretrained' local base, trained a few steps."""
    tok = word_tokenizer()
    add_item_tokens(tok, ITEMS)
    base = build_scratch_model(TINY, tok) if arch == "gpt2" else tiny_llama(tok)
    base_dir = tmp_path / f"{arch}-base"
    base.save_pretrained(base_dir)
    model = apply_lora(base, LoraConfig(r=4, alpha=8, dropout=0.0), trainable_token_ids=[19, 20, 21])
    fit(model, {"train": rows(tok)}, CFG, tmp_path / "fit", progress=False)
    return write_run(tmp_path / f"lora-{arch}", model, tok, SimpleNamespace(kind="pretrained", used=str(base_dir), path=None))


def scratch_run(tmp_path: Path) -> Path:
    """A fully fine-tuned scratch GPT-2 (saved as model/)."""
    tok = word_tokenizer()
    add_item_tokens(tok, ITEMS)
    model = apply_lora(build_scratch_model(TINY, tok), LoraConfig(enabled=False))
    fit(model, {"train": rows(tok)}, CFG, tmp_path / "fit", progress=False)
    return write_run(tmp_path / "scratch", model, tok, SimpleNamespace(kind="scratch", used="scratch GPT-2", path=None))


def reload_logits(out: Path) -> torch.Tensor:
    plain = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True, trust_remote_code=False).eval()
    with torch.no_grad():
        return plain(PROBE).logits


@pytest.mark.parametrize("make_run", [lambda p: lora_run(p, "gpt2"), lambda p: lora_run(p, "llama"), scratch_run],
                         ids=["lora-gpt2", "lora-llama", "scratch"])
def test_export_reloads_with_plain_transformers_and_gives_the_runs_logits(tmp_path, make_run):
    run = make_run(tmp_path)
    out = export_run(run, tmp_path / "exported")
    assert {"config.json", "model.safetensors", "tokenizer.json", "label_space.json", "README.md"} <= {p.name for p in out.iterdir()}
    assert not (out / "adapter_config.json").exists()  # merged: a plain model, no peft needed
    logits = reload_logits(out)
    inference, _ = load_for_inference(run)  # what evtlm evaluate / predict score with (LoRA merged)
    unmerged, _ = load_run_model(run)  # the adapter as trained
    with torch.no_grad():
        torch.testing.assert_close(logits, inference(PROBE).logits, rtol=0, atol=0)
        torch.testing.assert_close(logits, unmerged(PROBE).logits, rtol=1e-5, atol=1e-5)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok(" viewed <item_7> .")["input_ids"] == [6, 19, 16]  # the item tokens travel, one token each
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and "per-prompt" in card
    assert ("merge_and_unload" in card) == run.name.startswith("lora")


def test_export_of_a_stream_run_keeps_its_read_out_beside_and_says_so(tmp_path):
    from evtlm.train.stream_model import HEAD_FILE, StreamLM

    tok = word_tokenizer()
    add_item_tokens(tok, ITEMS)
    lm = apply_lora(build_scratch_model(TINY, tok), LoraConfig(r=4, alpha=8, dropout=0.0), trainable_token_ids=[19, 20, 21])
    run = write_run(tmp_path / "stream", StreamLM(lm, [19, 20, 21], copy=True), tok,
                    SimpleNamespace(kind="pretrained", used=str(tmp_path / "base"), path=None), formulation="stream")
    build_scratch_model(TINY, tok).save_pretrained(tmp_path / "base")  # the base the adapter sits on (same seed)
    out = export_run(run, tmp_path / "exported")
    assert (out / HEAD_FILE).is_file() and json.loads((out / "evtlm_stream.json").read_text())["answer_ids"] == [19, 20, 21]
    assert "NOT the run's scores" in (out / "README.md").read_text()
    inference, _ = load_for_inference(run)
    with torch.no_grad():  # the exported LM is the read-out's LM, exactly
        torch.testing.assert_close(reload_logits(out), inference.lm(PROBE).logits, rtol=0, atol=0)


def test_export_cli_writes_once_and_refuses_to_overwrite_silently(tmp_path, capsys):
    run = scratch_run(tmp_path)
    out = tmp_path / "exported"
    assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    assert "AutoModelForCausalLM.from_pretrained" in capsys.readouterr().out
    assert main(["export", "--run", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already exists" in err and "--overwrite" in err
    assert main(["export", "--run", str(run), "--out", str(out), "--overwrite"]) == 0
    assert main(["export", "--run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "run.json" in capsys.readouterr().err
