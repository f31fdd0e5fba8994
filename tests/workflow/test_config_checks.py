"""The workflow reads its config files as strictly as the CLI: duplicate keys stop it, 1e-3 is a number."""

import yaml

from tests.conftest import TINY_CONFIG, run_snakemake


def write_config(path, lr_line):
    text = yaml.safe_dump(TINY_CONFIG, sort_keys=False).replace("    lr: 0.002\n", lr_line)
    path.write_text(text)
    return path


def test_a_duplicate_key_in_the_configfile_stops_the_workflow(tmp_path):
    config = write_config(tmp_path / "config.yaml", "    lr: 0.002\n    lr: 0.5\n")
    proc = run_snakemake(tmp_path, None, "-n", "--configfile", str(config), check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"config file {config}: duplicate key 'lr' at line" in output and "Traceback" not in output


def test_a_learning_rate_written_1e_3_is_a_number_in_the_workflow(tmp_path):
    config = write_config(tmp_path / "config.yaml", "    lr: 1e-3\n")
    proc = run_snakemake(tmp_path, None, "-n", "--configfile", str(config))
    assert "train_state0" in proc.stdout


def test_nested_config_values_on_the_command_line_are_typed_by_the_schema(tmp_path):
    # Snakemake passes a nested --config value's leaves as strings ('2', '3', 'false')
    override = "defaults={train: {epochs: 2, compile: false}, prune: {states: 3, target_sparsity: 0.6}}"
    proc = run_snakemake(tmp_path, TINY_CONFIG, "-n", "--config", override, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "must be of type" not in output
    assert "state2" in output  # prune.states: 3 took effect (the tiny config has 2)
