"""Start an experiment from a state 0 trained once for every method of its group (``share_state0``).

State 0 trains the dense model, the same for dense, Refill and RSST of one group, dataset, model
and seed. The workflow trains it once under ``results/shared/`` and gives each experiment its own
copy: the same weights, metrics and timings, relabelled with the experiment's name, method and
config, so every later state, report and export reads an ordinary state 0. Its summary names the
shared run in ``shared_state0``, which lets reports count its time once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from prunebench.config import shared_state0_run, training_hash
from prunebench.io import atomic_copy, atomic_write_json
from prunebench.train.checkpoint import load_trained, save_checkpoint
from prunebench.train.metrics import PREDICTIONS_NAME, experiment_ids, read_rows, write_rows
from prunebench.train.recovery import FILES, check_recorded, file_digests, release_finished
from prunebench.train.tracking import track_copied_state0, write_csvs

CHECKPOINTS = ("last.pt", "best.pt", "init.pt")
log = logging.getLogger("prunebench")


def adopt_state0(source_dir: str | Path, out_dir: str | Path, experiment: dict, logging: dict | None = None) -> dict:
    """Write the shared state 0 in ``source_dir`` to ``out_dir`` as ``experiment``'s own; returns its summary.

    ``logging`` is the config's tracking settings: the copied epochs open the chain's tracked run
    (prunebench.train.tracking), as if the experiment had trained its state 0 itself."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    run, trained = shared_state0_run(experiment)
    ids = experiment_ids(experiment, 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    # this job reads the shared run's outputs, so Snakemake has recorded them: its finished copy can go
    release_finished(source_dir)
    for name in CHECKPOINTS:
        path = source_dir / name
        check_recorded(path, 0, run, f"the copy of state 0 for {experiment['name']}")
        ckpt = load_trained(path, trained, 0)  # trained for the group's dense state 0 as configured now
        ckpt.update(
            experiment=experiment["name"], method=experiment["method"], config=experiment,
            config_hash=training_hash(experiment),
        )  # fmt: skip
        ckpt["shared_state0"] = str(source_dir)
        save_checkpoint(out_dir / name, ckpt)
    rows = [{**row, **ids} for row in read_rows(source_dir / "metrics.jsonl")]
    write_rows(out_dir / "metrics.jsonl", rows)
    track_copied_state0(out_dir, experiment, logging, rows)
    write_csvs(out_dir, experiment, 0, rows)
    if (source_dir / PREDICTIONS_NAME).is_file():  # the same test images, predicted by the same model
        atomic_copy(source_dir / PREDICTIONS_NAME, out_dir / PREDICTIONS_NAME)
    else:  # a shared run finished before the file was kept: no earlier copy's file stays beside this one
        (out_dir / PREDICTIONS_NAME).unlink(missing_ok=True)
    summary = json.loads((source_dir / "summary.json").read_text(encoding="utf-8"))
    summary.update(ids, shared_state0=str(source_dir), config_hash=training_hash(experiment))
    summary[FILES] = file_digests(out_dir, CHECKPOINTS)  # of the relabelled copies, which the next state reads
    if isinstance(summary.get("provenance"), dict):  # where and how it ran stays; the config is the copy's
        summary["provenance"].update(config_hash=summary["config_hash"], experiment=experiment)
    atomic_write_json(out_dir / "summary.json", summary)  # last: the copy is whole once this exists
    log.info(
        "state 0 of %s is the dense state 0 trained once in %s (final test %.2f)",
        experiment["name"], source_dir, summary["final_test_acc"],
    )  # fmt: skip
    return summary
