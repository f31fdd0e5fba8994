"""The config's JSON schema: where it ships, its defaults, the node of one setting."""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

SCHEMA_RESOURCE = "config.schema.yaml"


def schema_path() -> Path:
    """Filesystem path of the config JSON schema shipped with the package."""
    return Path(str(resources.files("prunebench") / "resources" / SCHEMA_RESOURCE))


@cache
def load_schema() -> dict:
    # libyaml's loader where PyYAML has it: ten times faster on the schema (the Snakemake parse reads it)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(schema_path().read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 (a SafeLoader)


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
