"""The tokenizer: the base model's, or a byte-level BPE trained on the training events.

`load_tokenizer` loads ``model.tokenizer`` (default: ``model.base``), a local directory or a hub
id, local files first so that an offline machine fails in a second rather than after a minute of
retries; remote code is never trusted. When that fails:

- ``model.when_unavailable: error`` (default): a one-line `ModelUnavailableError` naming the fix.
- ``model.when_unavailable: scratch``: a GPT-2-style byte-level BPE of
  ``model.scratch.vocab_size`` tokens is trained on the **training-split** texts only (never on
  validation or test text, which would leak their vocabulary), with ``<|endoftext|>`` as eos and
  pad, and cached on disk under a fingerprint of the texts and settings.

`TokenizerInfo` records what was used and why, for the data report and the run card.

>>> from evtlm.recipe import ModelConfig
>>> cfg = ModelConfig(base="/nowhere/gpt2", when_unavailable="scratch", scratch={"vocab_size": 300})
>>> import tempfile
>>> texts = ["User 1 viewed Product 7. 2 minutes later bought it."] * 20   # training split only
>>> tok, info = load_tokenizer(cfg, texts, cache_dir=tempfile.mkdtemp())
>>> info.source, tok.eos_token, tok.pad_token == tok.eos_token
('scratch', '<|endoftext|>', True)
>>> tok.decode(tok(" viewed Product 7.")["input_ids"])
' viewed Product 7.'
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evtlm.fsio import default_cache_dir
from evtlm.text.bases import load_pretrained, missing_fix, resolve_base
from evtlm.errors import ModelUnavailableError
from evtlm.recipe import ModelConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["TokenizerInfo", "load_tokenizer", "try_load_pretrained", "ensure_pad", "train_scratch_tokenizer", "tokenizer_fingerprint",
           "EOS"]

EOS = "<|endoftext|>"
SCRATCH_VERSION = "bpe-v1"  # bump when the scratch recipe changes: invalidates cached tokenizers


@dataclass
class TokenizerInfo:
    """Which tokenizer was used: ``source`` is ``pretrained``, ``scratch`` or ``given``."""

    source: str
    name: str  # the path / hub id loaded, or the cache directory of a scratch tokenizer
    vocab_size: int
    reason: str | None = None  # why the pretrained tokenizer was not used
    fingerprint: str | None = None  # scratch: of the training texts and settings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_tokenizer(model_cfg: ModelConfig, train_texts: Iterable[str] | None = None,
                   cache_dir: str | Path | None = None) -> tuple[PreTrainedTokenizerBase, TokenizerInfo]:
    """The recipe's tokenizer, or a scratch BPE on ``train_texts`` when allowed (see module doc)."""
    name = model_cfg.tokenizer or model_cfg.base
    key = "model.tokenizer" if model_cfg.tokenizer else "model.base"
    tok, why = try_load_pretrained(model_cfg)
    if tok is not None:
        return tok, TokenizerInfo("pretrained", name, len(tok))
    if model_cfg.when_unavailable == "error":
        raise ModelUnavailableError(
            f"cannot load the tokenizer {name!r} ({why})",
            where=key,
            fix=missing_fix(name) or f"set {key} to a local directory holding the tokenizer files (e.g. "
            "../shared/tokenizers/gpt2), or set model.when_unavailable=scratch to train one on the training events",
        )
    if train_texts is None:
        raise ModelUnavailableError(
            f"cannot load the tokenizer {name!r} ({why}) and no training texts were given to train one",
            where="load_tokenizer(train_texts=None)",
            fix="pass the training-split texts (evtlm.data.prepare.prepare does)",
        )
    tok, fp, path = train_scratch_tokenizer(train_texts, model_cfg.scratch.vocab_size,
                                            default_cache_dir() if cache_dir is None else Path(cache_dir))
    return tok, TokenizerInfo("scratch", str(path), len(tok), reason=why, fingerprint=fp)


def try_load_pretrained(model_cfg: ModelConfig) -> tuple[PreTrainedTokenizerBase | None, str | None]:
    """``(tokenizer, None)`` when the recipe's tokenizer loads (pad set), else ``(None, why)``."""
    name = model_cfg.tokenizer or model_cfg.base
    from transformers import AutoTokenizer

    def load(source: str) -> PreTrainedTokenizerBase:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False)

    tok, where = load_pretrained(resolve_base(name), load, "tokenizer")  # a named base (smollm2-135m): its cache directory
    if tok is None:
        return None, where
    ensure_pad(tok, name)
    return tok, None


def ensure_pad(tok: PreTrainedTokenizerBase, name: str) -> None:
    """Pad with eos when the tokenizer has no pad token (GPT-2 has none)."""
    if tok.eos_token is None:
        raise ModelUnavailableError(f"the tokenizer {name!r} has no eos token", where="model.tokenizer",
                                    fix="use a causal-LM tokenizer (GPT-2 style) or model.when_unavailable=scratch")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token


def train_scratch_tokenizer(texts: Iterable[str], vocab_size: int, cache_dir: Path) -> tuple[PreTrainedTokenizerBase, str, Path]:
    """A byte-level BPE trained on ``texts``, cached under ``cache_dir/tokenizers/scratch-<fp>``.

    Returns ``(tokenizer, fingerprint, directory)``. Byte-level: any text encodes (no unknown
    token), and a history split into pieces tokenizes to the same ids as the joined text.
    """
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise ModelUnavailableError("no training text to train a scratch tokenizer on",
                                    where="the training window", fix="check the split leaves training events")
    digest = hashlib.sha256(f"{SCRATCH_VERSION}|{vocab_size}|".encode())
    for t in texts:
        digest.update(t.encode("utf-8"))
        digest.update(b"\0")
    fp = digest.hexdigest()[:20]
    target = Path(cache_dir) / "tokenizers" / f"scratch-{fp}"
    if (target / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(target)), fp, target

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's split regex
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer=trainer, length=len(texts))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, bos_token=EOS, unk_token=EOS, pad_token=EOS)
    # write to a temporary sibling, then rename: a concurrent reader never sees half a tokenizer
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    tok.save_pretrained(str(tmp))
    try:
        tmp.rename(target)
    except OSError:  # another process won the race: theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return tok, fp, target


def tokenizer_fingerprint(tok: PreTrainedTokenizerBase) -> str:
    """A content hash of a tokenizer (vocab, merges, specials): part of the dataset cache key."""
    h = hashlib.sha256()
    backend = getattr(tok, "backend_tokenizer", None)
    h.update(backend.to_str().encode() if backend is not None else repr(sorted(tok.get_vocab().items())).encode())
    h.update(f"|{tok.eos_token}|{tok.pad_token}|{len(tok)}".encode())
    return h.hexdigest()[:20]


ITEM_TOKEN = "<item_{}>"  # model.item_tokens: one token per catalog item


def item_token(item_id: str) -> str:
    return ITEM_TOKEN.format(item_id)


def add_item_tokens(tokenizer: Any, item_ids: Iterable[str]) -> list[int]:
    """Add ``<item_ID>`` for every item (idempotent) and return their token ids in item order.

    The tokens absorb the space before them (``lstrip``), so " <item_7>" is ONE token: the
    answer " <item_7>" after a prompt is a single decoding step.
    """
    from tokenizers import AddedToken

    names = [item_token(str(i)) for i in item_ids]
    tokenizer.add_tokens([AddedToken(n, lstrip=True, rstrip=False, normalized=False, single_word=False) for n in names])
    return tokenizer.convert_tokens_to_ids(names)


def item_token_ids(tokenizer: Any) -> list[int]:
    """Ids of every ``<item_…>`` token the tokenizer has, ascending."""
    return sorted(i for t, i in tokenizer.get_added_vocab().items() if t.startswith("<item_") and t.endswith(">"))
