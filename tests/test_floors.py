"""Dependency floors: pyproject.toml's lower bounds are what `make test-floors` pins and tests.

The floor suite (`make test-floors`) installs requirements-floors.txt into its own venv and runs
this suite there; these checks keep that file and pyproject.toml from drifting apart, and make a
too-old environment fail by name rather than deep inside a library call.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# torch's floor (2.2) has no CPU build installable here; the floor suite runs the pinned 2.13.0
UNTESTED_FLOORS = {"torch"}


def version_tuple(text: str) -> tuple[int, ...]:
    """'4.56' -> (4, 56, 0): floors and pins compare without trailing zeros."""
    parts = [int(p) for p in re.findall(r"\d+", text)][:3]
    return tuple(parts + [0] * (3 - len(parts)))


def declared_floors() -> dict[str, str]:
    """Every dependency of pyproject.toml (dev extras included) -> its ``>=`` floor."""
    tomllib = pytest.importorskip("tomllib")  # python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    floors = {}
    for spec in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        found = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)", spec)
        assert found, f"pyproject dependency {spec!r} has no plain >= floor"
        floors[found[1].lower().replace("_", "-")] = found[2]
    return floors


def floor_pins() -> dict[str, str]:
    """requirements-floors.txt's ``name==version`` lines."""
    pins = {}
    for line in (REPO / "requirements-floors.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements-floors.txt: {line!r} is not pinned with =="
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_every_floor_is_pinned_for_the_floor_suite():
    floors, pins = declared_floors(), floor_pins()
    assert set(floors) == set(pins), f"only in pyproject: {set(floors) - set(pins)}, only pinned: {set(pins) - set(floors)}"
    differ = {n: (floors[n], pins[n]) for n in floors
              if n not in UNTESTED_FLOORS and version_tuple(floors[n]) != version_tuple(pins[n])}
    assert not differ, f"floor != pin (pyproject, requirements-floors.txt): {differ}"
    assert version_tuple(pins["torch"]) >= version_tuple(floors["torch"])


def test_installed_versions_meet_the_floors():
    too_old = {}
    for name, floor in declared_floors().items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a dev tool this environment does without
        if version_tuple(have) < version_tuple(floor):
            too_old[name] = f"{have} < {floor}"
    assert not too_old, f"installed below the declared floors: {too_old}"


def test_the_floor_target_pins_torch():
    """An unpinned torch would pull a multi-GB CUDA build: the target installs the pinned one first."""
    make = (REPO / "Makefile").read_text()
    target = make[make.index("\ntest-floors:"):].split("\n\n")[0]
    assert "grep '^torch==' requirements-floors.txt" in target and "-c requirements-floors.txt" in target
    assert ".venv-floors/" in (REPO / ".gitignore").read_text().splitlines()
