"""train/ is a stack: rank helpers < runner < launch < job entry (imports read as in tests/test_architecture.py)."""

from tests.test_architecture import graph

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
    from tests.conftest import REPO

    script = (REPO / "workflow" / "scripts" / "train_state.py").read_text(encoding="utf-8")
    cli = (REPO / "src" / "prunebench" / "cli.py").read_text(encoding="utf-8")
    assert "from prunebench.train.job import run_job" in script and "from prunebench.train.job import run_job" in cli
