"""Start an experiment from a state 0 trained once for every method of its group (``share_state0``).

State 0 trains the dense model, the same for dense, Refill and RSST of one group, dataset, model
and seed. The workflow trains it once under ``results/shared/`` and gives each experiment its own
copy: the same weights, metrics and timings, relabelled with the experiment's name, method and
config, so every later state, report and export reads an ordinary state 0. Its summary names the
shared run in ``shared_state0``, which lets reports count its time once.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prunebench.config import shared_state0_run, training_hash
from prunebench.io import atomic_copy
from prunebench.results.layout import BEST, INIT, LAST, METRICS, PREDICTIONS, SUMMARY
from prunebench.results.metrics import experiment_ids, read_rows, write_rows
from prunebench.results.summary import FILES, SHARED_STATE0, read_summary_file, write_summary_file
from prunebench.train.checkpoint import load_trained, save_checkpoint
from prunebench.train.recovery import check_recorded, file_digests, release_finished
from prunebench.train.tracking import track_copied_state0, write_csvs

CHECKPOINTS = (LAST, BEST, INIT)
log = logging.getLogger("prunebench")


def adopt_state0(source_dir: str | Path, out_dir: str | Path, experiment: dict, tracking: dict | None = None) -> dict:
    """Write the shared state 0 in ``source_dir`` to ``out_dir`` as ``experiment``'s own; returns its summary.

    ``tracking`` is the config's tracking settings (``logging``): the copied epochs open the chain's tracked run
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
        ckpt[SHARED_STATE0] = str(source_dir)
        save_checkpoint(out_dir / name, ckpt)
    rows = [{**row, **ids} for row in read_rows(source_dir / METRICS)]
    write_rows(out_dir / METRICS, rows)
    track_copied_state0(out_dir, experiment, tracking, rows)
    write_csvs(out_dir, experiment, 0, rows)
    if (source_dir / PREDICTIONS).is_file():  # the same test images, predicted by the same model
        atomic_copy(source_dir / PREDICTIONS, out_dir / PREDICTIONS)
    else:  # a shared run finished before the file was kept: no earlier copy's file stays beside this one
        (out_dir / PREDICTIONS).unlink(missing_ok=True)
    summary = read_summary_file(source_dir / SUMMARY)
    summary.update(ids, **{SHARED_STATE0: str(source_dir)}, config_hash=training_hash(experiment))
    summary[FILES] = file_digests(out_dir, CHECKPOINTS)  # of the relabelled copies, which the next state reads
    if isinstance(summary.get("provenance"), dict):  # where and how it ran stays; the config is the copy's
        summary["provenance"].update(config_hash=summary["config_hash"], experiment=experiment)
    write_summary_file(out_dir / SUMMARY, summary)  # last: the copy is whole once this exists
    log.info(
        "state 0 of %s is the dense state 0 trained once in %s (final test %.2f)",
        experiment["name"], source_dir, summary["final_test_acc"],
    )  # fmt: skip
    return summary
