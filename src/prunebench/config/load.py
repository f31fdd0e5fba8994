"""Reading a config: the YAML file (strict: no duplicate keys, 1e-3 is a number), the strings
``snakemake --config`` passes, and the schema validation with one error naming every problem."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from prunebench.config.schema import load_schema, schema_node
from prunebench.errors import ConfigError

if TYPE_CHECKING:  # imported where a config is validated: the training code (bench/gpu_check.py) runs without it
    import jsonschema


# A number with an exponent: YAML 1.1 (PyYAML, Snakemake) reads 1e-3 or 1.0e5 as a string.
_NUMBER = re.compile(r"^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")


class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """``yaml.SafeLoader`` (libyaml's where PyYAML has it: ten times faster) that refuses a key given
    twice in one mapping (plain YAML keeps the last silently) and reads ``1e-3`` as a number, as YAML
    1.2 and JSON do (YAML 1.1 reads it as a string)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges defaults that the mapping's own keys may override
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(
                    f"duplicate key {key!r} at line {line} (first at line {seen[key]}): YAML would keep only "
                    "the last value silently; remove one of them"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _NUMBER, list("-+0123456789."))


def load_config_file(path: str | Path) -> dict:
    """Read a YAML config safely (no Python objects), refusing duplicate keys; errors are ConfigErrors."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give the config's YAML file (e.g. {path / 'config.yaml'})")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(f"config file {path}, line {line}: not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


# What `snakemake --config` hands over as strings: a nested value (`defaults={train: {epochs: 2}}`)
# is read with YAML's BaseLoader, whose every leaf is a string, and a top-level word such as
# `download=false` stays one too. Where the schema wants a number or null and no string, such a
# string is read by YAML 1.2's core rules; a boolean's words (YAML 1.1's yes/no/on/off too) wherever
# the schema takes a boolean. Any other string stays one, for the schema to refuse by name.
_BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


_NULL_WORDS = {"null", "Null", "NULL", "~"}


_INTEGER = re.compile(r"^[-+]?[0-9]+$")


_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def _allowed_types(node: dict, root: dict) -> list[str]:
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    types = node.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    for branch in node.get("oneOf", []) + node.get("anyOf", []):
        types += _allowed_types(branch, root)
    return types


def numbers_read(value: Any, node: dict, root: dict) -> Any:
    """``value`` with the strings that stand for a boolean, a number or null (how ``snakemake --config``
    passes them, nested values included, and how YAML 1.1 reads ``1e-3``) turned into that type
    wherever the schema expects it; where it also takes a string, only booleans and ``1e-3``."""
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    types = _allowed_types(node, root)
    if isinstance(value, str):
        word, numeric = value.strip(), "integer" in types or "number" in types
        if "boolean" in types and word.lower() in _BOOLEAN_WORDS:
            return _BOOLEAN_WORDS[word.lower()]
        if "string" in types and not _NUMBER.match(word):  # a string may be meant: only 1e-3 is read
            return value
        if "null" in types and word in _NULL_WORDS:
            return None
        if numeric and _INTEGER.match(word):
            return int(word)
        if numeric and _FLOAT.match(word):
            number = float(word)
            if "integer" in types and number.is_integer():
                return int(number)
            if "number" in types:
                return number
        return value
    if isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        return {
            k: numbers_read(v, props[k], root)
            if k in props
            else numbers_read(v, extra, root)
            if isinstance(extra, dict)
            else v
            for k, v in value.items()
        }
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [numbers_read(v, node["items"], root) for v in value]
    return value


def _where(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# keys that were removed, and what replaces them (named in the error an old config gets)
REPLACED_KEYS = {
    ("reprune", "budget"): "prune.budget (groups, params or macs; `channels` is now `groups`)",
    ("reprune", "macs_reduction"): "prune.target_sparsity with prune.budget: macs",
}


def _yaml_word(value) -> str:
    """A schema value as the config file spells it: true, false and null, not Python's True/None."""
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def _describe(error: jsonschema.ValidationError) -> str:
    where = _where(error.absolute_path)
    value = error.instance
    kw, arg = error.validator, error.validator_value
    if kw == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed))
        section = [str(p) for p in error.absolute_path][-1:]
        moved = [f"{section[0]}.{e} is replaced by {REPLACED_KEYS[(section[0], e)]}" for e in extra
                 if section and (section[0], e) in REPLACED_KEYS]  # fmt: skip
        if moved:
            return f"{where}: {'; '.join(moved)}"
        hint = f"allowed keys: {', '.join(allowed)}" if allowed else "no keys are allowed here"
        return f"{where}: unknown key {', '.join(repr(e) for e in extra)}; {hint}"
    if kw == "enum":
        return f"{where} = {value!r}: must be one of {', '.join(map(_yaml_word, arg))}"
    if kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
        return f"{where} = {value!r}: must be {op[kw]} {arg}"
    if kw == "required":
        missing = [k for k in arg if k not in value]
        return f"{where}: missing required key {', '.join(map(repr, missing))}"
    if kw == "pattern":
        desc = error.schema.get("description", f"must match {arg}")
        if "propertyNames" in error.schema_path:  # a key of a mapping, not a value
            return f"{where}: the name {value!r} is not allowed; rename it. {desc}"
        return f"{where} = {value!r}: invalid. {desc}"
    if kw == "type":
        return f"{where} = {value!r}: must be of type {arg}"
    if kw in ("minItems", "minProperties"):
        return f"{where}: must not be empty"
    if kw == "uniqueItems":
        return f"{where} = {value!r}: entries must be unique"
    if kw == "oneOf":
        return f"{where} = {value!r}: {error.schema.get('description', 'invalid value')}"
    return f"{where}: {error.message}"


def validate_raw(config: dict, source: str = "config") -> None:
    """Validate a raw config mapping against the schema; raise one ConfigError listing every problem."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    # jsonschema's minimum and maximum let NaN through (every comparison with it is false): one check
    # for every number of the config, model kwargs included, replaces the schema's words on those keys
    non_finite = dict(_non_finite(config, ()))
    errors = [e for e in validator.iter_errors(config) if not _about_non_finite(e, non_finite)]
    found = [(list(map(str, e.absolute_path)), _describe(e)) for e in errors]
    found += [(list(map(str, path)), _describe_non_finite(path, value)) for path, value in non_finite.items()]
    if found:
        lines = [line for _, line in sorted(found, key=lambda f: f[0])]
        raise ConfigError(f"invalid {source}:\n  " + "\n  ".join(dict.fromkeys(lines)))


def _about_non_finite(error: jsonschema.ValidationError, non_finite: dict) -> bool:
    """Whether a schema error only says that a NaN or infinity is wrong: the number itself, or the
    list holding it where the schema offers a choice of forms (oneOf: measure.states)."""
    path = tuple(error.absolute_path)
    if path in non_finite:
        return True
    return error.validator in ("oneOf", "anyOf") and any(p[: len(path)] == path for p in non_finite)


def _non_finite(value: Any, path: tuple) -> Any:
    """(path, value) of every NaN or infinite number in a config mapping."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _non_finite(v, (*path, i))


def _describe_non_finite(path: tuple, value: float) -> str:
    bounds = _bounds_of(schema_node(path))
    return f"{_where(path)} = {_yaml_number(value)}: must be a finite number" + (f" ({bounds})" if bounds else "")


def _yaml_number(value: float) -> str:
    return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")


def _bounds_of(node: dict) -> str:
    low = (f">= {node['minimum']}" if "minimum" in node else f"> {node['exclusiveMinimum']}"
           if "exclusiveMinimum" in node else "")  # fmt: skip
    high = (f"<= {node['maximum']}" if "maximum" in node else f"< {node['exclusiveMaximum']}"
            if "exclusiveMaximum" in node else "")  # fmt: skip
    return " and ".join(b for b in (low, high) if b)
