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
