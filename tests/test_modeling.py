"""Base loading, scratch pretraining + cache, LoRA / item tokens: what trains, what is saved."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from evtlm.errors import ModelUnavailableError
from evtlm.train.modeling import add_item_tokens, apply_lora, build_scratch_model, item_token_ids, load_base
from evtlm.recipe import LoraConfig, ModelConfig, ScratchConfig, TrainConfig
from evtlm.train.run_dir import load_run_model, save_model
from evtlm.train.fit import fit

WORDS = ["User", "1", "2", "3", "viewed", "bought", "Product", "7", "8", "9", "added", "to", "cart", "it", ".", "later", "minutes"]
TINY = ScratchConfig(n_layer=2, n_head=2, n_embd=32, n_positions=64, pretrain_max_steps=3, pretrain_block=16, pretrain_batch_size=4)


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer built in-process (no files): ids 0..19."""
    vocab = {w: i for i, w in enumerate(["<|endoftext|>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<unk>")


TEXTS = ["User 1 viewed Product 7 . 2 minutes later bought it .", "User 2 viewed Product 8 . added it to cart ."] * 20


def rows(tokenizer, n=24, seed=0) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    ids = [rng.integers(2, len(tokenizer), rng.integers(4, 12)).tolist() for _ in range(n)]
    return datasets.Dataset.from_dict({"input_ids": ids, "labels": [[-100, -100] + x[2:] for x in ids]})


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


CFG = TrainConfig(max_steps=4, batch_size=4, lr=1e-2, eval_every=100, save_every=100, log_every=100, early_stopping_patience=None)


def test_offline_hub_id_fails_fast_with_the_fix():
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="when_unavailable=scratch") as err:
        load_base(ModelConfig(base="surely-not/a-model-id-xyz"), word_tokenizer())
    assert time.perf_counter() - start < 10  # no minute of network retries
    assert "model.base" in str(err.value)
    with pytest.raises(ModelUnavailableError, match="no such directory"):
        load_base(ModelConfig(base="./nowhere/gpt2"), word_tokenizer())


def test_scratch_base_is_pretrained_once_then_reused(tmp_path):
    cfg = ModelConfig(base="./nowhere/gpt2", when_unavailable="scratch", scratch=TINY)
    model, info = load_base(cfg, word_tokenizer(), TEXTS, cache_dir=tmp_path, progress=False)
    assert info.kind == "scratch" and not info.cached and info.pretrain["steps"] == 3
    assert "unavailable" in info.reason and "from scratch" in info.reason
    assert model.config.vocab_size == len(word_tokenizer()) and model.config.n_layer == 2
    again, info2 = load_base(cfg, word_tokenizer(), TEXTS, cache_dir=tmp_path, progress=False)
    assert info2.cached and info2.path == info.path
    a, b = model.state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in b)
    # different text -> a different cache entry
    _, info3 = load_base(cfg, word_tokenizer(), TEXTS[:10], cache_dir=tmp_path, progress=False)
    assert not info3.cached and info3.path != info.path


def test_only_lora_weights_change(tmp_path):
    tok = word_tokenizer()
    model = apply_lora(build_scratch_model(TINY, tok), LoraConfig(r=4, alpha=8, dropout=0.0))
    before = snapshot(model)
    fit(model, {"train": rows(tok)}, CFG, tmp_path, progress=False)
    after = snapshot(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_B" in k or "lora_A" in k for k in changed)
    assert any("lora_B" in k for k in changed)  # B starts at zero and must move for LoRA to matter


def test_full_finetuning_trains_everything():
    model = apply_lora(build_scratch_model(TINY, word_tokenizer()), LoraConfig(enabled=False))
    assert all(p.requires_grad for p in model.parameters())


def test_unknown_target_module_names_the_valid_ones():
    with pytest.raises(ModelUnavailableError, match="c_attn"):
        apply_lora(build_scratch_model(TINY, word_tokenizer()), LoraConfig(target_modules=["q_proj"]))


def test_item_tokens_train_only_their_rows_and_survive_save_load(tmp_path):
    tok = word_tokenizer()
    base = build_scratch_model(TINY, tok)
    new_ids = add_item_tokens(tok, ["7", "8", "9"])
    assert item_token_ids(tok) == new_ids == [19, 20, 21]
    assert tok(" viewed <item_7> .")["input_ids"] == [6, 19, 16]  # one token, space absorbed
    base.resize_token_embeddings(len(tok), mean_resizing=False)
    base_dir = tmp_path / "scratch-base"
    base.save_pretrained(base_dir)  # the "cached" scratch base the run directory copies
    model = apply_lora(base, LoraConfig(r=4, alpha=8, dropout=0.0), trainable_token_ids=new_ids)
    embed = model.get_input_embeddings()
    all_ids = torch.arange(len(tok))
    rows_before = embed(all_ids).detach().clone()
    frozen_before = {k: v for k, v in snapshot(model).items() if "lora_" not in k and "trainable_tokens" not in k}

    data = rows(tok)
    data = datasets.Dataset.from_dict({"input_ids": [x + [19, 20, 21] for x in data["input_ids"]],
                                       "labels": [y + [19, 20, 21] for y in data["labels"]]})
    fit(model, {"train": data}, CFG, tmp_path / "run", progress=False)

    rows_after = embed(all_ids).detach()
    moved = torch.nonzero((rows_after != rows_before).any(dim=1)).flatten().tolist()
    assert moved == new_ids  # the item rows changed, no other row did
    frozen_after = {k: v for k, v in snapshot(model).items() if k in frozen_before}
    assert all(torch.equal(frozen_before[k], frozen_after[k]) for k in frozen_before)

    # save -> load gives identical logits (base rebuilt from base/, rows from the adapter)
    info = SimpleNamespace(kind="scratch", used="scratch GPT-2", path=str(base_dir))
    meta = save_model(model, tok, tmp_path / "run", info)
    (tmp_path / "run" / "run.json").write_text(__import__("json").dumps({"model": meta}))
    loaded, tok2 = load_run_model(tmp_path / "run")
    probe = torch.tensor([[2, 6, 19, 16, 5, 20, 21]])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(probe).logits, loaded(probe).logits, rtol=0, atol=0)
    assert tok2(" viewed <item_7> .")["input_ids"] == [6, 19, 16]


def test_full_model_save_load_identical_logits(tmp_path):
    tok = word_tokenizer()
    model = apply_lora(build_scratch_model(TINY, tok), LoraConfig(enabled=False))
    fit(model, {"train": rows(tok)}, CFG, tmp_path, progress=False)
    meta = save_model(model, tok, tmp_path, SimpleNamespace(kind="scratch", used="scratch", path=None))
    assert meta["format"] == "model" and (tmp_path / "model" / "model.safetensors").is_file()
    (tmp_path / "run.json").write_text(__import__("json").dumps({"model": meta}))
    loaded, _ = load_run_model(tmp_path)
    probe = torch.tensor([[2, 3, 4, 5, 6]])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(probe).logits, loaded(probe).logits, rtol=0, atol=0)


def test_library_noise_a_user_cannot_act_on_is_not_printed():
    """transformers printed "`loss_type=None` was set in the config but it is unrecognized" on every
    run and a generate() deprecation (issue 12, finding 16): both are dropped, others still pass."""
    import logging

    import evtlm  # noqa: F401  (installs the filter)

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    library = logging.getLogger("transformers")  # both modules' records propagate to it
    logger = logging.getLogger("transformers.modeling_utils")
    handler = Collect()
    library.addHandler(handler)
    try:
        logger.warning("`loss_type=None` was set in the config but it is unrecognized. Using the default loss")
        logging.getLogger("transformers.utils.generic").warning("`past_key_values`/`cache_params` are deprecated.")
        logger.warning("a real warning still shows")
    finally:
        library.removeHandler(handler)
    assert seen == ["a real warning still shows"]


def test_a_lora_run_repeats_exactly_whatever_ran_before_it(tmp_path, monkeypatch):
    """The adapter's random init comes from train.seed, not from the RNG state what ran before
    left: a first run pretrains the scratch base (seeded draws), a second identical run reuses it
    from the cache (no draws); both log the same losses (before the fix, in two processes:
    0.6706 vs 0.6611 at step 1)."""
    import csv

    from evtlm.cli.finetune import finetune
    from evtlm.recipe import load_recipe
    from tests.test_evaluate import REPO, TINY

    monkeypatch.setenv("EVTLM_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()

    def losses(name: str) -> list[str]:
        recipe = load_recipe(REPO / "recipes/purchase.yaml", [
            *TINY, "lora.full_finetune_scratch=false", "lora.dropout=0", "train.max_steps=3", "train.log_every=1",
            "eval.baselines=[]", f"output.dir={tmp_path}", f"output.name={name}"])
        try:
            run = finetune(recipe, progress=False, cache_dir=tmp_path / "cache")
        finally:
            torch.set_num_threads(threads)
        with open(run / "train_log.csv") as fh:
            return [row["loss"] for row in csv.DictReader(fh) if row["loss"]]

    first = losses("a")  # pretrains and caches the scratch base
    torch.rand(7)  # another RNG state
    assert losses("b") == first and len(first) == 3
    cached = [json.loads((tmp_path / name / "run.json").read_text())["base"]["cached"] for name in "ab"]
    assert cached == [False, True]  # the second run's base came from the cache: no draws there
