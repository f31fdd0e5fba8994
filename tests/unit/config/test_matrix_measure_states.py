"""measure.states: which finished states the workflow times (one measure_state job each)."""

import pytest

from prunebench.config import measured_states, resolve_config
from prunebench.errors import ConfigError

SHARED = "shared/t-synthetic-tiny_vit-s0"


def _cnn(config):
    config["models"]["r20"] = {"arch": "resnet20"}
    config["experiments"]["t"]["models"] = ["r20"]
    config["defaults"]["prune"]["groups"] = ["channels"]
    config["defaults"]["train"]["epochs"] = 4
    return config


def _resolved(config, methods=("refill", "rsst"), **measure):
    config["defaults"]["prune"]["states"] = 4
    config["defaults"]["measure"] = {"enabled": True, **measure}
    config["experiments"]["t"]["methods"] = list(methods)
    return resolve_config(config)


def test_by_default_the_last_state_and_the_dense_reference_are_timed(tiny_config):
    resolved = _resolved(tiny_config)
    assert [measured_states(e) for e in resolved.experiments.values()] == [[3], [3]]
    assert resolved.timed_states() == [
        (SHARED, 0),
        ("t-synthetic-tiny_vit-refill-s0", 3),
        ("t-synthetic-tiny_vit-rsst-s0", 3),
    ]
    # per experiment: its own last state and the reference it is compared against
    assert resolved.timed_states(["t-synthetic-tiny_vit-rsst-s0"]) == [(SHARED, 0), ("t-synthetic-tiny_vit-rsst-s0", 3)]


def test_all_states_time_a_shared_state0_once(tiny_config):
    resolved = _resolved(tiny_config, states="all")
    timed = resolved.timed_states()
    assert timed.count((SHARED, 0)) == 1 and len(timed) == 1 + 2 * 3


def test_a_list_times_those_states_only(tiny_config):
    resolved = _resolved(_cnn(tiny_config), methods=("refill", "reprune"), states=[1, 3])
    assert resolved.timed_states() == [(f"t-synthetic-r20-{m}-s0", k) for m in ("refill", "reprune") for k in (1, 3)]
    # state 0 of a REPrune run is its own (pruned); of Refill, the shared dense run's
    resolved = _resolved(_cnn(tiny_config), methods=("refill", "reprune"), states=[0])
    assert resolved.timed_states() == [("shared/t-synthetic-r20-s0", 0), ("t-synthetic-r20-reprune-s0", 0)]


def test_nothing_is_timed_when_measuring_is_off(tiny_config):
    resolved = _resolved(tiny_config, enabled=False)
    assert resolved.timed_states() == [] and measured_states(next(iter(resolved.experiments.values()))) == []


@pytest.mark.parametrize(
    ("states", "message"),
    [
        ([1, 4], "experiments.t: measure.states lists state 4, but the group has 4 states (0..3)"),
        ("first", "defaults.measure.states = 'first': Which finished states are timed"),
        ([], "defaults.measure.states = []: Which finished states are timed"),
        ([-1], "defaults.measure.states = [-1]: Which finished states are timed"),
    ],
)
def test_bad_states_are_one_clear_error(tiny_config, states, message):
    with pytest.raises(ConfigError) as err:
        _resolved(tiny_config, states=states)
    assert message in str(err.value)
