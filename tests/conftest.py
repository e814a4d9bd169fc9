"""Shared fixtures. Tests are offline and CPU-only; `../shared` is optional."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`, or a skip with the reason when this checkout has none beside it."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"needs the real event logs in {path} (absent: a fresh clone has no ../shared)")
    return path


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir() -> Path:
    """`../shared/tokenizers/gpt2`: OpenAI's GPT-2 BPE files, loadable offline."""
    path = SHARED / "tokenizers" / "gpt2"
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"needs the GPT-2 tokenizer files in {path} (absent: no ../shared beside the clone)")
    return path


@pytest.fixture(scope="session")
def built_tokenizer_dir(tmp_path_factory) -> Path:
    """A GPT-2-style byte-level BPE built in-process: the scratch path's tokenizer
    (`evtlm.text.tokenization.train_scratch_tokenizer`, ``<|endoftext|>`` as eos and pad) trained on a
    simulated shop's text, saved as a tokenizer directory. Tests of tokenizer invariants run on
    it in any checkout; ``../shared/tokenizers/gpt2`` adds the real vocabulary where present."""
    import numpy as np

    from evtlm.recipe import ACTIONS, SyntheticConfig, VerbalizeConfig
    from evtlm.ingest.simulate import simulate_shop
    from evtlm.tasks.purchase import ANSWERS, SESSION_QUESTION, user_questions
    from evtlm.text.tokenization import train_scratch_tokenizer
    from evtlm.text.verbalize import action_label, verbalize_user

    log = simulate_shop(SyntheticConfig(users=60, items=80, days=21, seed=11))
    texts = [verbalize_user(part, log.catalog, VerbalizeConfig(item=item))
             for item in ("id", "title") for _, part in log.events.groupby("user_id", sort=False)]
    # the tasks' questions and answers, as prepare adds them to a scratch corpus: without them
    # " yes" / " no" would be bytes that share a first token
    day = 86_400 * 10**9
    questions = [" Next action:", " Next item:", SESSION_QUESTION, *user_questions(np.zeros(3), np.array([1, 3, 9]) * day, 7)]
    answers = [*ANSWERS, *(" " + action_label(a, VerbalizeConfig()) for a in ACTIONS)]
    texts += [q + a for q in questions for a in answers] * 20
    _, _, path = train_scratch_tokenizer(texts, vocab_size=1000, cache_dir=tmp_path_factory.mktemp("built-tokenizer"))
    return path


@pytest.fixture(scope="session", params=["built", "gpt2"])
def tokenizer_dir(request) -> Path:
    """A tokenizer directory, twice: the in-process BPE (always runs) and GPT-2's (skips without
    ../shared). Invariants that hold for any byte-level BPE are checked under both."""
    return request.getfixturevalue("built_tokenizer_dir" if request.param == "built" else "gpt2_tokenizer_dir")


def finetune_metrics(recipe_path: Path, overrides: list[str], tmp_path: Path, monkeypatch) -> dict:
    """``evtlm finetune`` of a small recipe in this process, its cache under ``tmp_path``; the run's
    metrics.json. torch's thread count is restored after (recipes may pin train.threads)."""
    import json

    import torch

    from evtlm.cli.finetune import finetune
    from evtlm.recipe import load_recipe

    monkeypatch.setenv("EVTLM_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(recipe_path, [*overrides, f"output.dir={tmp_path}", "output.name=run"])
    threads = torch.get_num_threads()
    try:
        run = finetune(recipe, progress=False, cache_dir=tmp_path / "cache")
    finally:
        torch.set_num_threads(threads)
    return json.loads((run / "metrics.json").read_text())
