"""A method's own settings section is part of that method's experiments' identity only (SPEC §4): changing
it retrains that method's states and no other method's, nor the shared dense state 0. The schema's
`x-method` mark says whose a section is; config.py names no method for it."""

import copy
from pathlib import Path

import pytest

from prunebench import config as C
from prunebench.config import (
    HASHED_AS_MARK,
    METHOD_MARK,
    load_config_file,
    load_schema,
    method_sections,
    resolve_config,
    training_hash,
)

DEMO = Path(__file__).resolve().parents[3] / "config" / "demo.yaml"


def _hashes(config: dict) -> dict[str, str]:
    resolved = resolve_config(config)
    return {name: training_hash(exp) for name, exp in {**resolved.state0_runs, **resolved.experiments}.items()}


def _retrained(config: dict, section: str, key: str, value) -> set[str]:
    """The experiments and state-0 runs whose hash changes when ``defaults.<section>.<key>`` is set."""
    before = _hashes(config)
    changed = copy.deepcopy(config)
    changed.setdefault("defaults", {}).setdefault(section, {})[key] = value
    after = _hashes(changed)
    assert after.keys() == before.keys()
    return {name for name in before if after[name] != before[name]}


def _of_method(config: dict, method: str) -> set[str]:
    return {n for n, e in resolve_config(config).experiments.items() if e["method"] == method}


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("rsst", "reg_granularity_prune", 0.5),  # issue 20: it replanned dense, random, Refill and the CNN group
        ("rsst", "lambda_schedule", "x^2"),
        ("rsst", "peak_at", 0.8),
        ("rsst", "finetune_epochs", 2),
        ("reprune", "linkage", "single"),
        ("reprune", "regrowth", 0.1),
    ],
)
def test_a_method_setting_retrains_that_methods_experiments_only(section, key, value):
    config = load_config_file(DEMO)  # dense, refill, rsst, random on a ViT; refill, reprune, random on a CNN
    own = _of_method(config, section)
    assert own
    # not the shared dense states 0 either (REPrune's state 0 is its own experiment's: among `own`)
    assert _retrained(config, section, key, value) == own


def test_the_shared_state0_run_holds_no_method_section():
    resolved = resolve_config(load_config_file(DEMO))
    shared = [run for name, run in resolved.state0_runs.items() if name.startswith("shared/")]
    assert shared
    for run in shared:
        assert run["method"] == "dense"
        assert not {path[0] for path in method_sections()} & run.keys()


def test_every_method_section_is_marked_with_a_known_method():
    from prunebench.pruning.registry import METHODS

    schema = load_schema()
    methods = set(schema["$defs"]["group"]["properties"]["methods"]["items"]["enum"])
    owners = {path: method for path, (method, _) in method_sections().items()}
    assert owners == {("rsst",): "rsst", ("reprune",): "reprune"}
    assert set(owners.values()) <= methods & set(METHODS)
    for (section,), (_, seen) in method_sections().items():
        # what other methods' hashes see holds only the section's own settings
        assert set(seen) <= set(schema["$defs"]["settings"]["properties"][section]["properties"])


def test_another_methods_section_at_its_defaults_keeps_the_hashes_from_before_the_mark(tiny_config):
    tiny_config["experiments"]["t"]["methods"] = ["dense", "refill", "random", "oneshot"]
    before = _hashes(tiny_config)
    schema = load_schema()
    for section in ("rsst", "reprune"):
        defaults = C.defaults_of(schema["$defs"]["settings"]["properties"][section])
        explicit = copy.deepcopy(tiny_config)
        explicit["defaults"][section] = defaults  # written out: the same as left out
        assert _hashes(explicit) == before


@pytest.fixture
def schema_with_method(replace_schema):
    """The schema with a made-up method `toy` and its section, as a later prunebench would add one."""

    def add(**marks):
        schema = copy.deepcopy(load_schema())
        schema["$defs"]["settings"]["properties"]["toy"] = {
            "type": "object",
            "additionalProperties": False,
            "description": "A made-up method's settings.",
            "properties": {"strength": {"type": "number", "default": 0.5, "description": "How hard it prunes."}},
            **marks,
        }
        schema["$defs"]["group"]["properties"]["methods"]["items"]["enum"].append("toy")
        replace_schema(schema)

    return add


def test_a_new_methods_section_is_its_identity_only_by_its_mark(tiny_config, schema_with_method):
    tiny_config["experiments"]["t"]["methods"] = ["refill", "rsst"]
    before = _hashes(tiny_config)
    schema_with_method(**{METHOD_MARK: "toy"})
    tiny_config["experiments"]["t"]["methods"].append("toy")
    after = _hashes(tiny_config)
    # the other methods' finished states keep their hashes after the upgrade that adds toy
    assert {n: after[n] for n in before} == before
    assert _retrained(tiny_config, "toy", "strength", 0.9) == _of_method(tiny_config, "toy")
    run = resolve_config(tiny_config).state0_runs["shared/t-synthetic-tiny_vit-s0"]
    assert "toy" not in run


def test_a_new_section_without_the_mark_is_every_methods_identity(tiny_config, schema_with_method):
    tiny_config["experiments"]["t"]["methods"] = ["refill", "toy"]
    schema_with_method()
    # unmarked, it is a shared setting: every experiment and the shared state 0 train anew
    assert _retrained(tiny_config, "toy", "strength", 0.9) == set(_hashes(tiny_config))


def test_a_marked_section_is_seen_as_its_hashed_as_value_by_other_methods(tiny_config, schema_with_method):
    tiny_config["experiments"]["t"]["methods"] = ["refill"]
    before = _hashes(tiny_config)
    schema_with_method()
    unmarked = _hashes(tiny_config)  # toy's section at its defaults, hashed by every experiment
    schema_with_method(**{METHOD_MARK: "toy", HASHED_AS_MARK: {"strength": 0.5}})
    # the section was hashed before the mark: the mark keeps the other methods' hashes, whatever toy's
    # settings (the shared state 0 holds no method's section, marked: rsst and reprune never were in it)
    name = "t-synthetic-tiny_vit-refill-s0"
    assert _hashes(tiny_config)[name] == unmarked[name] != before[name]
    assert _retrained(tiny_config, "toy", "strength", 0.9) == set()
