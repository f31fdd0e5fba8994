"""Every pruning method by its config name: the built-in ones, and those a config's ``plugins`` register.

A method outside the package is a module that defines its class (a :class:`PruningMethod`
subclass) and registers it when imported::

    from prunebench.pruning.registry import register
    from prunebench.pruning.refill import Refill

    @register
    class Magnitude(Refill):
        name = "magnitude"
        settings = {...}

and a config that names the module in its top-level ``plugins: [my_package.magnitude]``: loading
the config imports it in every process that reads the config (the Snakemake process, every
training job), before the config is validated, so the schema's ``methods`` enum and settings
sections include it (``prunebench.config``). Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import re
import textwrap
from typing import TYPE_CHECKING

import yaml

from prunebench.errors import ConfigError
from prunebench.pruning.hooks import Dense, Metric, PruningMethod, ReportSection
from prunebench.pruning.refill import OneShot, RandomPruning, Refill
from prunebench.pruning.reprune import REPrune
from prunebench.pruning.rsst import RSST

if TYPE_CHECKING:
    from torch import nn

    from prunebench.pruning.groups import GroupSet, Masks
    from prunebench.pruning.plan import StatePlan

METHODS: dict[str, type[PruningMethod]] = {}
# The method of the dense control chain and of the shared dense state 0 every other method starts from.
CONTROL = Dense.name
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # part of experiment names, folders and job names
_generation = 0  # bumped by every registration: what is derived from the registry (the schema) is redone


def register(cls: type[PruningMethod]) -> type[PruningMethod]:
    """Register a method class under its ``name`` (usable as a class decorator). Registering the same
    class again does nothing; another class under a taken name is an error."""
    global _generation
    if not (isinstance(cls, type) and issubclass(cls, PruningMethod)):
        raise TypeError(f"register() takes a PruningMethod subclass, not {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"method {cls.__qualname__} needs a name of lower-case letters, digits and underscores (a letter first), got {name!r}"
        )
    if METHODS.get(name) is cls:
        return cls
    if name in METHODS:
        raise ValueError(f"method name {name!r} is taken by {METHODS[name].__module__}.{METHODS[name].__qualname__}")
    METHODS[name] = cls
    _generation += 1
    return cls


for _cls in (Dense, Refill, RSST, REPrune, RandomPruning, OneShot):
    register(_cls)


def unregister(name: str) -> None:
    """Forget method ``name`` (tests that register a method of their own)."""
    global _generation
    if METHODS.pop(name, None) is not None:
        _generation += 1


def generation() -> int:
    """Changes whenever a method is registered (the config's caches of the schema key on it)."""
    return _generation


def load_plugins(modules) -> None:
    """Import the modules a config's ``plugins`` names (each registers its methods when imported)."""
    if modules is None:
        return
    if not isinstance(modules, list) or not all(isinstance(m, str) and m for m in modules):
        raise ConfigError(f"plugins = {modules!r}: must be a list of Python module names")
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"plugins: cannot import {module!r} ({exc}); the module must be importable in every process "
                "that reads the config (on PYTHONPATH, or installed in the environment)"
            ) from None


def method_class(name: str) -> type[PruningMethod]:
    """The class of method ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]


def declared(name: str) -> type[PruningMethod]:
    """What method ``name`` declares: its class, or the base class's declarations for a name no class is
    registered under in this process (a result file of a method whose plugin it did not import)."""
    return METHODS.get(name, PruningMethod)


def method_for(experiment: dict, state: int, groupsets: list[GroupSet]) -> PruningMethod:
    """The hooks of ``experiment``'s method for ``state``."""
    return method_class(experiment["method"])(experiment, state, groupsets)


def plan_state(
    method: str, model: nn.Module, groupsets: list[GroupSet], prev: Masks, prune_cfg: dict, state: int, **context
) -> StatePlan:
    """The plan of ``state`` (>= 1) for ``method``, from the weights the previous state trained
    (``context``: the experiment's other settings, e.g. ``rsst``, ``seed``, and ``batches``; the
    methods' own sections default to their schema's defaults)."""
    cls = method_class(method)
    batches = context.pop("batches", None)
    sections = {name: section_defaults(c) for name, c in METHODS.items() if c.settings is not None}
    experiment = {"name": method, "method": method, "seed": 0, **sections, **context, "prune": prune_cfg}
    return cls(experiment, state, groupsets).plan(model, prev, batches=batches)


# --- what the config, tracking and the reports read off the registered classes ---


def settings_schema(cls: type[PruningMethod]) -> dict | None:
    """The JSON schema of ``cls``'s settings section (its ``settings``, YAML text parsed), or None."""
    block = cls.settings
    if block is None:
        return None
    if isinstance(block, str):
        block = yaml.safe_load(textwrap.dedent(block))
    if not isinstance(block, dict):
        raise TypeError(f"method {cls.name}: settings must be a JSON schema (a mapping), got {type(block).__name__}")
    return block


def section_defaults(cls: type[PruningMethod]) -> dict:
    """The defaults of ``cls``'s settings section (its properties' ``default``)."""
    props = (settings_schema(cls) or {}).get("properties", {})
    return {key: sub["default"] for key, sub in props.items() if "default" in sub}


def gradient_metrics() -> dict[str, Metric]:
    """Every registered method's gradient metrics by field (the first declaration of a field wins)."""
    out: dict[str, Metric] = {}
    for cls in METHODS.values():
        for m in cls.gradient_metrics:
            out.setdefault(m.field, m)
    return out


def summary_columns() -> dict[str, tuple[str, ...]]:
    """Every registered method's summary fields as report columns: column -> path in summary.json."""
    out: dict[str, tuple[str, ...]] = {}
    for cls in METHODS.values():
        for col, path in cls.summary_columns.items():
            out.setdefault(col, tuple(path))
    return out


def report_sections() -> list[ReportSection]:
    """Every registered method's comparison-report sections, in registration order (each once)."""
    out: list[ReportSection] = []
    for cls in METHODS.values():
        out += [s for s in cls.report_sections if s not in out]
    return out
