"""The package's import structure: strict layers, no circles.

Every ``prunebench`` import of every module is read with ``ast``: the ones at the top of a file and
the ones inside functions (kept there only so that light processes import no torch) alike, so that a
function-local import cannot hide a circle. A module may import modules of its own layer or of the
layers below it, never one above, and no chain of imports may come back to where it started.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "src" / "prunebench"

# Bottom to top. A name is a module or a package of prunebench (a package holds all its modules);
# "" is the package's own __init__ (its version).
LAYERS: list[tuple[str, ...]] = [
    ("", "errors", "torch_build"),  # no prunebench import at all
    ("io", "seeding", "logs", "archs"),  # files written atomically, seeds, log setup, model names
    ("results",),  # the file contract: the results layout, metrics rows, summary.json, throughput.json
    ("models", "data", "accel"),  # models and their costs, datasets and loaders, devices and autocast
    ("pruning",),  # groups, importance, budgets, and the methods (one class each)
    ("config",),  # the config file, the experiment matrix, what a state trains (reads the methods)
    ("estimates", "provenance", "prepare"),  # what a job asks for, what produced a result, checks before jobs
    ("export",),  # compact models, their costs and throughput (a finished state's summary records them)
    ("train",),  # one prune state: ranks < runner < launch < job entry
    ("report",),  # reports from the results' files
    ("cli",),  # the `prunebench` command
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The prunebench modules ``name`` imports, wherever in the file: ``from package import submodule``
    names the submodule only, ``from package import name`` the package (its __init__)."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if name else []
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_package else here[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
                module = f"prunebench.{module}" if module else "prunebench"
            else:
                module = node.module or ""
            subs = [f"{module}.{a.name}" for a in node.names]
            short = {s.removeprefix("prunebench.") for s in subs}
            targets = subs + ([module] if short - known else [])
        else:
            continue
        for target in targets:
            if target != "prunebench" and not target.startswith("prunebench."):
                continue
            short = target.removeprefix("prunebench").removeprefix(".")
            if short in known:
                out.add(short)
    return out - {name}


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def layer_of(name: str) -> int:
    best, layer = -1, None
    for i, names in enumerate(LAYERS):
        for prefix in names:
            if (name == prefix or (prefix and name.startswith(prefix + "."))) and len(prefix) > best:
                best, layer = len(prefix), i
    assert layer is not None, f"prunebench.{name} is in no layer: add it to LAYERS in {Path(__file__).name}"
    return layer


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_module_is_in_a_layer():
    for name in modules():
        layer_of(name)


def test_no_import_goes_up_a_layer():
    upward = [
        f"prunebench.{a or '__init__'} (layer {layer_of(a)}: {', '.join(LAYERS[layer_of(a)])}) imports "
        f"prunebench.{b} (layer {layer_of(b)}: {', '.join(LAYERS[layer_of(b)])})"
        for a, targets in graph().items()
        for b in sorted(targets)
        if layer_of(b) > layer_of(a)
    ]
    assert not upward, "imports that run up a layer:\n" + "\n".join(upward)


def test_no_import_circle():
    found = cycles(graph())
    assert not found, "import circles (function-local imports included):\n" + "\n".join(
        " <-> ".join(f"prunebench.{m}" for m in c) for c in found
    )


def test_the_checker_sees_circles_and_local_imports(tmp_path):
    """The checker itself: a circle closed by an import inside a function is found."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    source = tmp_path / "m.py"
    source.write_text(
        "def f():\n    from prunebench.train import state\n    from prunebench.config import resolve_config\n"
    )
    assert imports_of("export.m", source, {"train", "train.state", "config"}) == {"train.state", "config"}


# The tests mirror the code: tests/unit/<package path>/test_<module>[_<aspect>].py tests the module
# <module> of that package (tests/unit/bench/ the scripts of bench/); tests/workflow/ runs the
# Snakefile's rules through real Snakemake; tests/*.py check the whole project (lint, docs, this file).
UNIT = REPO / "tests" / "unit"


def _unit_test_files() -> list[Path]:
    return sorted(p for p in UNIT.rglob("test_*.py"))


def test_unit_tests_sit_at_their_modules_mirrored_path():
    misplaced = []
    for test in _unit_test_files():
        folder = test.parent.relative_to(UNIT)
        code = REPO / "bench" if folder.parts[:1] == ("bench",) else PACKAGE.joinpath(*folder.parts)
        names = {code.name}  # the package's own interface (its __init__)
        if code.is_dir():
            names |= {p.stem for p in code.glob("*.py") if p.stem != "__init__"}
            names |= {p.name for p in code.iterdir() if (p / "__init__.py").is_file()}
        stem = test.stem.removeprefix("test_")
        if not any(stem == n or stem.startswith(n + "_") for n in names):
            misplaced.append(f"{test.relative_to(REPO)}: names no module of {code.relative_to(REPO)}")
    assert not misplaced, "unit tests that do not mirror a module:\n" + "\n".join(misplaced)


def test_no_test_module_imports_another():
    """Shared helpers live in a conftest or a helper module, not in another test file."""
    found = []
    for test in sorted((REPO / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(test.read_text(encoding="utf-8"))):
            module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            if module.startswith("tests.") and module.rsplit(".", 1)[-1].startswith("test_"):
                found.append(f"{test.relative_to(REPO)} imports {module}")
    assert not found, "\n".join(found)


# train/ is a stack: rank helpers < runner < launch < job entry.
# Bottom to top; a module imports train modules of its own level or below only.
STACK = [
    ("ranks", "loop", "writer", "checkpoint", "tracking"),  # which rank this is; a step; checkpoints; tracking
    ("recovery",),  # one trainer per state, the sealed finished outputs
    ("resume", "share"),  # a killed state's progress; a shared state 0's copies
    ("runner",),  # one state on one device
    ("finish",),  # its summary and outputs
    ("launch",),  # in this process
    ("distributed",),  # in train.gpus x train.nodes processes
    ("job",),  # the one job entry (prunebench train-state, the workflow's training rules)
    ("__init__",),
]


def level(module: str) -> int:
    name = module.removeprefix("train").removeprefix(".") or "__init__"
    return next(i for i, names in enumerate(STACK) if name in names)


def test_every_train_module_sits_on_the_stack_and_imports_only_below():
    edges = {m: targets for m, targets in graph().items() if m == "train" or m.startswith("train.")}
    for module in edges:
        level(module)  # raises StopIteration for a module missing from STACK
    upward = [
        f"prunebench.{a} imports prunebench.{b}"
        for a, targets in edges.items()
        for b in sorted(targets)
        if b.startswith("train.") and level(b) > level(a)
    ]
    assert not upward, "\n".join(upward)


def test_one_job_entry_for_the_command_and_the_workflow():
    script = (REPO / "workflow" / "scripts" / "train_state.py").read_text(encoding="utf-8")
    cli = (REPO / "src" / "prunebench" / "cli.py").read_text(encoding="utf-8")
    assert "from prunebench.train.job import run_job" in script and "from prunebench.train.job import run_job" in cli
