"""The method registry: a method is one class, registered by name; a config's plugins register theirs."""

import copy
import sys

import pytest

from prunebench.config import load_schema, resolve_config, training_hash
from prunebench.errors import ConfigError
from prunebench.pruning import registry
from prunebench.pruning.hooks import PruningMethod
from prunebench.pruning.refill import Refill
from tests.conftest import TINY_CONFIG

PLUGIN = "tests.workflow.toy_method"


@pytest.fixture
def plugin_config():
    """TINY_CONFIG with the toy plugin (unregistered again after the test)."""
    config = copy.deepcopy(TINY_CONFIG)
    config["plugins"] = [PLUGIN]
    config["experiments"]["t"]["methods"] = ["refill", "magnitude"]
    yield config
    registry.unregister("magnitude")
    sys.modules.pop(PLUGIN, None)  # imported again, it registers again


def test_the_built_in_methods_and_their_declarations():
    assert list(registry.METHODS) == ["dense", "refill", "rsst", "reprune", "random", "oneshot"]
    own = {name for name, cls in registry.METHODS.items() if cls.trains_own_state0}
    assert own == {"reprune"}
    assert {name for name, cls in registry.METHODS.items() if not cls.prunes} == {registry.CONTROL} == {"dense"}
    schema = load_schema()
    assert schema["$defs"]["group"]["properties"]["methods"]["items"]["enum"] == list(registry.METHODS)
    # each settings section where the key order of resolved experiments has always had it
    sections = list(schema["$defs"]["settings"]["properties"])
    assert sections.index("rsst") == sections.index("prune") + 1
    assert sections.index("reprune") == sections.index("measure") + 1


def test_a_plugin_registers_its_method_before_the_config_is_validated(plugin_config):
    # the config names a method the schema lacks until its plugin is imported
    assert "magnitude" not in load_schema()["$defs"]["group"]["properties"]["methods"]["items"]["enum"]
    plugin_config["defaults"]["magnitude"] = {"grad_scale": 0.5}
    resolved = resolve_config(plugin_config)
    exp = resolved.experiments["t-synthetic-tiny_vit-magnitude-s0"]
    assert exp["magnitude"] == {"grad_scale": 0.5}
    assert resolved.state0_of["t-synthetic-tiny_vit-magnitude-s0"] == "shared/t-synthetic-tiny_vit-s0"
    settings = load_schema()["$defs"]["settings"]["properties"]
    assert list(settings)[-1] == "magnitude" and settings["magnitude"]["x-method"] == "magnitude"
    # a value its schema refuses is refused like any other setting's
    plugin_config["defaults"]["magnitude"] = {"grad_scale": 2.0}
    with pytest.raises(ConfigError, match=r"defaults\.magnitude\.grad_scale = 2\.0: must be <= 1"):
        resolve_config(plugin_config)


def test_a_plugins_section_changes_no_other_hash(plugin_config):
    plain = copy.deepcopy(TINY_CONFIG)
    before = {n: training_hash(e) for n, e in resolve_config(plain).experiments.items()}
    resolved = resolve_config(plugin_config)  # the plugin's section is now in every experiment
    assert "magnitude" in resolved.experiments["t-synthetic-tiny_vit-refill-s0"]
    assert {n: training_hash(resolved.experiments[n]) for n in before} == before


def test_a_plugins_gradient_metrics_reach_tracking_and_the_curves(plugin_config):
    from prunebench.report.plots import CURVE_PANELS, curve_panels
    from prunebench.train.tracking import _scalars

    assert "grad_scale" not in curve_panels()
    resolve_config(plugin_config)  # imports the plugin
    row = {"method": "magnitude", "lr": 0.1, "reg_lambda": 0.0, "grad_scale": 0.5}
    assert _scalars(row) == {"optim/lr": 0.1, "optim/rsst_lambda": 0.0, "method/grad_scale": 0.5}
    assert "method/grad_scale" not in _scalars({**row, "method": "refill"})
    assert curve_panels() == {**CURVE_PANELS, "grad_scale": "gradient scale"}


def test_an_unimportable_plugin_is_a_config_error():
    config = {**copy.deepcopy(TINY_CONFIG), "plugins": ["no_such_module_of_prunebench"]}
    with pytest.raises(ConfigError, match="plugins: cannot import 'no_such_module_of_prunebench'"):
        resolve_config(config)


def test_a_method_needs_a_free_name_and_a_class():
    class Again(Refill):
        name = "refill"

    class Bad(PruningMethod):
        name = "Bad name"

    with pytest.raises(ValueError, match="'refill' is taken"):
        registry.register(Again)
    with pytest.raises(ValueError, match="needs a name"):
        registry.register(Bad)
    with pytest.raises(TypeError):
        registry.register(object)
    assert registry.register(Refill) is Refill  # the same class again: nothing happens


def test_an_unknown_method_reads_as_the_base_class():
    # a result file of a method whose plugin this process did not import
    assert registry.declared("not_registered") is PruningMethod
    with pytest.raises(ValueError, match="unknown method 'not_registered'"):
        registry.method_class("not_registered")
