"""The pipeline in the folders: every import points upstream, and nothing imports in a cycle.

The stages, upstream first (docs/internals.md)::

    foundation (errors, recipe, timeunits, fsio, sharded)
      -> ingest -> text -> tasks -> data -> train -> decode -> evaluate -> predict -> cli

A module may import its own package and any package upstream of it, at module level or inside a
function. One kind of upward reference is allowed, listed in `REGISTRY_LOOKUPS`: the recipe
validates a name against the registry that owns it (a preset, a baseline), importing the
registry only when the recipe sets that name, so each name has one source.

An *import cycle* is one Python resolves at import time: modules importing each other at module
level (outside functions; ``if TYPE_CHECKING:`` blocks excluded). A function-level import inside
one package is a call-time reference and may point either way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
STAGES = ("ingest", "text", "tasks", "data", "train", "decode", "evaluate", "predict", "cli")
FOUNDATION = ("errors", "recipe", "reference", "timeunits", "fsio", "sharded")
REGISTRY_LOOKUPS = {
    ("evtlm.recipe.checks", "evtlm.ingest.presets"): "data.preset and data.options are checked against PRESETS",
    ("evtlm.recipe.checks", "evtlm.evaluate.baselines"): "eval.baselines are checked against BASELINES",
    ("evtlm.recipe.checks", "evtlm.tasks"): "task.name and task.formulation are checked against TASKS",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / "evtlm").rglob("*.py"))}


def stage(module: str) -> int:
    """0 for the foundation, then 1.. in pipeline order (``__main__`` sits with the cli)."""
    parts = module.split(".")[1:]
    if not parts or parts[0] in FOUNDATION:
        return 0
    return len(STAGES) if parts[0] == "__main__" else STAGES.index(parts[0]) + 1


def resolve(name: str) -> str | None:
    """The evtlm module an import statement names (``from evtlm.x import y``: y when a module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at import time)`` for every evtlm import in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.body:
                    visit(sub, in_function, True)
                for sub in child.orelse:
                    visit(sub, in_function, type_only)
                continue
            names: list[str] = []
            if isinstance(child, ast.ImportFrom) and child.level == 0 and (child.module or "").startswith("evtlm"):
                names = [f"{child.module}.{a.name}" for a in child.names]
            elif isinstance(child, ast.Import):
                names = [a.name for a in child.names if a.name.startswith("evtlm")]
            for name in names:
                target = resolve(name)
                if target and target != module and not type_only:
                    found.append((target, child.lineno, not in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)), type_only)

    visit(tree, False, False)
    return found


def test_the_stages_are_packages_and_every_module_belongs_to_one() -> None:
    for name in STAGES:
        assert (SRC / "evtlm" / name / "__init__.py").is_file(), f"evtlm.{name} is not a package"
    for module in MODULES:
        assert stage(module) >= 0  # raises ValueError for a top-level module outside FOUNDATION


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_upstream(module: str) -> None:
    upward = [f"line {line}: {target} (stage {STAGES[stage(target) - 1]}) from stage "
              f"{'foundation' if stage(module) == 0 else STAGES[stage(module) - 1]}"
              for target, line, at_import in imports(module)
              if stage(target) > stage(module) and ((module, target) not in REGISTRY_LOOKUPS or at_import)]
    assert not upward, f"{module} imports downstream:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    graph = {m: {t for t, _, at_import in imports(m) if at_import} for m in MODULES}
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def walk(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                walk(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m)


def test_the_checker_sees_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    """The rules above catch what they are for (a planted upward import and a planted cycle)."""
    pkg = tmp_path / "evtlm"
    for name, text in {"ingest/__init__.py": "", "ingest/a.py": "from evtlm.ingest import b\n",
                       "ingest/b.py": "import evtlm.ingest.a\n", "evaluate/__init__.py": "",
                       "evaluate/m.py": "", "text/__init__.py": "",
                       "text/t.py": "def f():\n    from evtlm.evaluate import m\n"}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    (pkg / "__init__.py").write_text("")
    global SRC, MODULES
    saved = SRC, MODULES
    SRC = tmp_path
    MODULES = {module_name(p): p for p in sorted(pkg.rglob("*.py"))}
    try:
        with pytest.raises(AssertionError, match="imports downstream"):
            test_imports_point_upstream("evtlm.text.t")
        with pytest.raises(pytest.fail.Exception, match="import cycle: evtlm.ingest.a -> evtlm.ingest.b -> evtlm.ingest.a"):
            test_no_import_cycle()
    finally:
        SRC, MODULES = saved
