"""Tokenizer loading: the base's, the offline error, and the scratch BPE (training text only)."""

from __future__ import annotations

import pytest

from evtlm.errors import ModelUnavailableError
from evtlm.recipe import ModelConfig
from evtlm.text.tokenization import load_tokenizer, tokenizer_fingerprint

TEXTS = ["User 1 viewed Product 7. 3 minutes later added it to cart. Seconds later bought it.",
         "User 2 viewed Product 12. New visit 2 days later: viewed Product 7."] * 30
PIECES = [" viewed Product 7.", " 3 minutes later added it to cart.", " New visit 2 days later: viewed Product 1002."]


def test_local_tokenizer_directory(tokenizer_dir, tmp_path):
    tok, info = load_tokenizer(ModelConfig(base=str(tokenizer_dir)), None, tmp_path)
    assert info.source == "pretrained" and info.name == str(tokenizer_dir) and info.vocab_size == len(tok)
    assert info.vocab_size == 50257 or tokenizer_dir.name.startswith("scratch-")  # GPT-2's, or built in-process
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"
    # pieces tokenize to the same ids separately as joined: what evtlm.data.prepare relies on
    joined = tok("User 1" + "".join(PIECES), add_special_tokens=False)["input_ids"]
    parts = sum((tok(p, add_special_tokens=False)["input_ids"] for p in ["User 1", *PIECES]), [])
    assert joined == parts


def test_unavailable_with_error_names_the_fix(tmp_path):
    with pytest.raises(ModelUnavailableError) as err:
        load_tokenizer(ModelConfig(base=str(tmp_path / "missing")), TEXTS, tmp_path)
    msg = str(err.value)
    assert "no such directory" in msg and "model.base" in msg and "when_unavailable=scratch" in msg
    assert "\n" not in msg


def test_offline_hub_id_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        load_tokenizer(ModelConfig(base="some-org/not-cached-model"), None, tmp_path)


def test_scratch_is_trained_cached_and_explained(tmp_path):
    cfg = ModelConfig(base=str(tmp_path / "missing"), when_unavailable="scratch", scratch={"vocab_size": 400})
    tok, info = load_tokenizer(cfg, TEXTS, tmp_path)
    assert info.source == "scratch" and "no such directory" in info.reason
    assert len(tok) <= 400 and tok.eos_token == tok.pad_token == "<|endoftext|>"
    assert tok.decode(tok(" bought Product 99!")["input_ids"]) == " bought Product 99!"  # byte-level: no unknowns
    joined = tok("User 1" + "".join(PIECES), add_special_tokens=False)["input_ids"]
    assert joined == sum((tok(p, add_special_tokens=False)["input_ids"] for p in ["User 1", *PIECES]), [])
    again, info2 = load_tokenizer(cfg, TEXTS, tmp_path)  # same texts: the cached files
    assert info2.name == info.name and tokenizer_fingerprint(again) == tokenizer_fingerprint(tok)
    _, info3 = load_tokenizer(cfg, TEXTS + ["User 3 saved Product 5."], tmp_path)
    assert info3.fingerprint != info.fingerprint


def test_scratch_without_texts_is_an_error(tmp_path):
    cfg = ModelConfig(base=str(tmp_path / "missing"), when_unavailable="scratch")
    with pytest.raises(ModelUnavailableError, match="no training texts"):
        load_tokenizer(cfg, None, tmp_path)
