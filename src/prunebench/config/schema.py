"""The config's JSON schema: where it ships, the registered methods' part of it, its defaults, the node
of one setting."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from prunebench.errors import ConfigError
from prunebench.pruning import registry

T = TypeVar("T")

SCHEMA_RESOURCE = "config.schema.yaml"


def schema_path() -> Path:
    """Filesystem path of the config JSON schema shipped with the package."""
    return Path(str(resources.files("prunebench") / "resources" / SCHEMA_RESOURCE))


@cache
def _shipped() -> dict:
    # libyaml's loader where PyYAML has it: ten times faster on the schema (the Snakemake parse reads it)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(schema_path().read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 (a SafeLoader)


# The mark of a method's settings section (see prunebench.config.identity.METHOD_MARK).
METHOD_MARK = "x-method"


def per_registry(fn: Callable[[], T]) -> Callable[[], T]:
    """Cache ``fn()`` (a function of the schema) once per state of the method registry: a plugin that
    registers a method later changes the schema. ``cache_clear`` clears it, as functools.cache's."""
    cached = cache(lambda _generation: fn())

    @functools.wraps(fn)
    def wrapper() -> T:
        return cached(registry.generation())

    wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return wrapper


@per_registry
def load_schema() -> dict:
    """The config's JSON schema: the shipped one (:func:`schema_path`) with the registered methods
    (:mod:`prunebench.pruning.registry`): their names are the group's ``methods`` enum, and each
    method's settings section (its class's ``settings``) is a section of ``$defs.settings``, marked
    ``x-method: <name>``, after the section its class names (``settings_after``; the key order of a
    resolved experiment) or after every other."""
    schema = copy.deepcopy(_shipped())
    schema["$defs"]["group"]["properties"]["methods"]["items"]["enum"] = list(registry.METHODS)
    sections = schema["$defs"]["settings"]["properties"]
    for name, cls in registry.METHODS.items():
        block = registry.settings_schema(cls)
        if block is None:
            continue
        if name in sections:
            raise ConfigError(f"method {name}: its settings section would replace the setting {name!r}")
        block = {**block, METHOD_MARK: name}
        after = cls.settings_after if cls.settings_after in sections else None
        items = list(sections.items())
        at = len(items) if after is None else [k for k, _ in items].index(after) + 1
        sections.clear()
        sections.update(items[:at] + [(name, block)] + items[at:])
    return schema


def schema_node(path: tuple) -> dict:
    """The schema of the config value at ``path`` ({} where the schema says nothing, as in model kwargs)."""
    root = load_schema()
    node: dict = root
    for part in path:
        while "$ref" in node:
            node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        if isinstance(part, int):  # an entry of a list, which may be one branch of a oneOf (measure.states)
            lists = [
                b for b in [node, *node.get("oneOf", []), *node.get("anyOf", [])] if isinstance(b.get("items"), dict)
            ]
            node = lists[0]["items"] if lists else {}
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def defaults_of(schema: dict) -> Any:
    """The default values a schema node declares, recursively, for objects with properties."""
    if "properties" in schema:
        out = {}
        for key, sub in schema["properties"].items():
            if "properties" in sub:
                out[key] = defaults_of(sub)
            elif "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
        return out
    return copy.deepcopy(schema.get("default"))


def deep_merge(base: dict, override: dict) -> dict:
    """Return ``base`` updated recursively with ``override`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
