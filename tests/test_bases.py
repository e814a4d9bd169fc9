"""Named pretrained bases (`evtlm.text.bases`) and architecture-chosen LoRA targets, on tiny models.

The real SmolLM2 base (a 517 MB conversion) is exercised by the slow tests/test_smollm2.py; here a
tiny Llama saved where the named base goes stands in for it.
"""

from __future__ import annotations

import json

import pytest
import torch

from evtlm.text import bases
from evtlm.cli.main import main
from evtlm.errors import ModelUnavailableError, RunDirError
from evtlm.train.modeling import add_item_tokens, apply_lora, lora_targets, load_base
from evtlm.recipe import LoraConfig, ModelConfig
from evtlm.text.tokenization import load_tokenizer
from evtlm.train.fit import fit
from tests.test_modeling import CFG, rows, snapshot, word_tokenizer

def tiny_llama(tok) -> torch.nn.Module:
    """A 2-layer Llama with tied embeddings (as SmolLM2's) over ``tok``'s vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=64,
                                        tie_word_embeddings=True, eos_token_id=0, pad_token_id=0, bos_token_id=0))


LLAMA = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EVTLM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_install(cache) -> None:
    """A tiny Llama and a word tokenizer where `make base-smollm2` would convert SmolLM2."""
    target = bases.base_dir("smollm2-135m")
    assert target == cache / "bases" / "smollm2-135m"
    tok = word_tokenizer()
    tiny_llama(tok).save_pretrained(target, safe_serialization=True)
    tok.save_pretrained(target)
    (target / bases.DONE_FILE).write_text(json.dumps({"name": "smollm2-135m"}))


def test_an_absent_named_base_is_one_line_naming_the_make_target(cache):
    for load in (lambda: load_tokenizer(ModelConfig(base="smollm2-135m")),
                 lambda: load_base(ModelConfig(base="smollm2-135m"), word_tokenizer())):
        with pytest.raises(ModelUnavailableError) as err:
            load()
        line = str(err.value)
        assert "\n" not in line and "'smollm2-135m'" in line and "run `make base-smollm2`" in line, line


def test_an_absent_named_base_falls_back_to_scratch_when_the_recipe_allows(cache):
    cfg = ModelConfig(base="smollm2-135m", when_unavailable="scratch", scratch={"vocab_size": 300})
    tok, info = load_tokenizer(cfg, ["User 1 viewed Product 7. 2 minutes later bought it."] * 20, cache_dir=cache)
    assert info.source == "scratch" and "smollm2-135m" in info.reason


def test_a_run_on_an_absent_named_base_says_what_to_run(cache, tmp_path):
    from evtlm.train.run_dir import load_run_model

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "tokenizer").mkdir()
    word_tokenizer().save_pretrained(run / "tokenizer")
    (run / "run.json").write_text(json.dumps({"model": {"format": "adapter", "base": "smollm2-135m", "base_kind": "pretrained",
                                                        "vocab_size": 20, "stream": None}}))
    with pytest.raises(RunDirError, match="make base-smollm2"):
        load_run_model(run)


def test_install_without_the_wheel_names_the_fix(cache, monkeypatch):
    fake = bases.NamedBase(name="smollm2-135m", wheel="evtlm-no-such-wheel-xyz", version="0", gguf="x/y.gguf",
                           origin="-", license="-", hub_id="-", make_target="base-smollm2")
    monkeypatch.setitem(bases.NAMED_BASES, "smollm2-135m", fake)
    with pytest.raises(ModelUnavailableError, match=r"evtlm-no-such-wheel-xyz wheel is not installed.*make base-smollm2"):
        bases.install("smollm2-135m")
    with pytest.raises(ModelUnavailableError, match="smollm2-135m"):
        bases.install("no-such-base")


def test_base_cli_lists_and_refuses_unknown_names_in_one_line(cache, capsys):
    assert main(["base", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "not installed (make base-smollm2)" in out
    assert main(["base", "install", "nope"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_installed_named_base_loads_and_gets_llama_lora_with_item_rows(cache):
    """model.base: smollm2-135m resolves to the cache directory; LoRA goes on the Llama projections
    by default; item tokens train through trainable_token_indices: only they and LoRA change."""
    fake_install(cache)
    assert bases.missing_fix("smollm2-135m") is None
    tok, tinfo = load_tokenizer(ModelConfig(base="smollm2-135m"))
    assert tinfo.source == "pretrained"
    new_ids = add_item_tokens(tok, ["7", "8", "9"])
    model, info = load_base(ModelConfig(base="smollm2-135m"), tok)
    assert info.used == "smollm2-135m" and "named base" in info.reason and info.path.endswith("bases/smollm2-135m")
    assert model.config.model_type == "llama" and model.get_input_embeddings().num_embeddings == len(tok)
    assert lora_targets(model) == LLAMA
    model = apply_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0), trainable_token_ids=new_ids)
    assert sorted(model.peft_config["default"].target_modules) == sorted(LLAMA)
    embed = model.get_input_embeddings()
    all_ids = torch.arange(len(tok))
    rows_before, before = embed(all_ids).detach().clone(), snapshot(model)
    fit(model, {"train": rows(tok)}, CFG, cache / "run", progress=False)
    changed = {k for k in before if not torch.equal(before[k], snapshot(model)[k])}
    assert changed and all("lora_" in k or "trainable_tokens" in k for k in changed), changed
    moved = torch.nonzero((embed(all_ids).detach() != rows_before).any(dim=1)).flatten().tolist()
    assert moved == new_ids  # tied output rows included: the embedding is the LM head here


def test_lora_targets_follow_the_architecture_and_stay_overridable():
    from evtlm.train.modeling import build_scratch_model
    from tests.test_modeling import TINY

    gpt2 = build_scratch_model(TINY, word_tokenizer())
    assert lora_targets(gpt2) == ["c_attn", "c_proj", "c_fc"]
    assert lora_targets(gpt2, ["c_attn"]) == ["c_attn"]
    with pytest.raises(ModelUnavailableError, match="q_proj.*not found.*c_attn"):
        lora_targets(gpt2, ["q_proj"])
