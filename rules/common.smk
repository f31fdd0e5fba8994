# Helpers shared by every rule: config validation, experiment lookup and the workflow's file paths,
# built from prunebench.results.layout (the one spelling of the results folder's layout). Nothing
# here imports torch or timm: parsing the workflow takes well under a second. The checks that build
# models (timm names, kwargs, sizes, prunable groups) run in the prepare rule, before any training job.
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from prunebench.config import (
    load_config_file,
    output_paths,
    resolve_config,
    training_hash,
)
from prunebench.errors import ConfigError
from prunebench.estimates import state_resources
from prunebench.logs import announce_state
from prunebench.results import layout
from prunebench.results.layout import (
    BEST,
    COMPACT_COST,
    COMPACT_MODEL,
    INDEX_REPORT,
    INIT,
    LAST,
    METRICS,
    SUMMARY,
    SUMMARY_REPORT,
    THROUGHPUT,
)
from prunebench.torch_build import BuildError, conda_env
from snakemake.exceptions import WorkflowError

try:
    # Snakemake reads the config files itself and keeps the last of duplicate keys silently:
    # read them once more, strictly, so that a duplicate is an error.
    for path in workflow.configfiles:
        load_config_file(path)
    RESOLVED = resolve_config(config, source="config")
except ConfigError as exc:
    sys.exit(f"prunebench: {exc}")

# The jobs' conda environment under --sdm conda: the torch build the nodes' NVIDIA driver runs
# (PRUNEBENCH_TORCH=cu126 for CUDA 12 drivers; docs/cluster.md, "GPU drivers"). Which one is no part of what a
# state trains: switching retrains nothing (the software-env rerun trigger is off, profiles/default).
try:
    CONDA_ENV = f"../envs/{conda_env(os.environ.get('PRUNEBENCH_TORCH', 'cu130'))}"
except BuildError as exc:
    sys.exit(f"prunebench: {exc}")

EXPERIMENTS = RESOLVED.experiments
# Everything this config writes lies under its output_dir: two configs never share a file.
OUTPUT = output_paths(config)
RESULTS, LOGS, BENCHMARKS = OUTPUT.results, OUTPUT.logs, OUTPUT.benchmarks
# State 0 is trained by a "run": a shared/ folder for all methods of a group (share_state0), or the
# experiment itself (REPrune, or share_state0: false). Experiments of a shared run copy its state 0.
STATE0_OF = RESOLVED.state0_of
STATE0_RUNS = RESOLVED.state0_runs
SHARING = [name for name, run in STATE0_OF.items() if run != name]


def one_of(names):
    """A wildcard constraint that matches exactly these names."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


wildcard_constraints:
    experiment=one_of(EXPERIMENTS),
    run=one_of(STATE0_RUNS),
    state=r"\d+",
    dataset=one_of({exp["dataset"] for exp in EXPERIMENTS.values()}),
    model=one_of({exp["model_key"] for exp in EXPERIMENTS.values()}),


# The training rules' parameter, and so their rerun trigger: the hash of the settings that change
# what a state trains (prunebench.config.training_hash), not the whole experiment. Measurement,
# reporting, device, paths, and settings added later at their neutral defaults change no hash.
HASHES = {
    name: training_hash(exp) for name, exp in {**STATE0_RUNS, **EXPERIMENTS}.items()
}


def get_training_hash(wildcards):
    return HASHES[wildcards.experiment]


def get_state0_training_hash(wildcards):
    return HASHES[wildcards.run]


def state_dir(experiment, state):
    return layout.state_dir(RESULTS, experiment, state)


def state_file(experiment, state, name):
    return layout.state_file(RESULTS, experiment, state, name)


def state_outputs(experiment, state):
    """A training rule's outputs: the state's checkpoints, metrics and summary (state 0: init.pt too)."""
    names = (LAST, BEST, *((INIT,) if state == 0 else ()), METRICS, SUMMARY)
    return {name.split(".")[0]: state_file(experiment, state, name) for name in names}


def recovery_dir(experiment, state):
    """Mid-state recovery files: outside the declared outputs, so Snakemake never deletes them."""
    return layout.recovery_dir(RESULTS, experiment, state)


def compact_file(experiment, name):
    return layout.compact_file(RESULTS, experiment, name)


def report_file(name, suffix=".md"):
    """A report under results/reports: ``index``, ``summary`` or a comparison's name."""
    return layout.report_file(RESULTS, name, suffix)


def num_states(experiment):
    return EXPERIMENTS[experiment]["prune"]["states"]


# A state's link to the state it reads is its summary.json, compared by content: Snakemake keeps the
# checksum of each small input of a finished job, and an input newer than the job's outputs but with the
# same checksum (republished or touched, unchanged) reruns nothing. The checkpoints themselves are too
# large for that (max-checksum-file-size), so they are ancient(): only their summary's contents (which
# record their sha256 and change whenever the state is trained again) decide. docs/recovery.md, "What reruns what".
def state_link(folder):
    """The inputs of a job that reads the state in ``folder``: checkpoints ancient(), summary by content."""
    names = (LAST, BEST, INIT, METRICS, SUMMARY)
    return {
        name.split(".")[0]: (ancient if name.endswith(".pt") else str)(
            f"{folder}/{name}"
        )
        for name in names
    }


def get_shared_state0(wildcards):
    """The files of the shared state 0 an experiment starts from."""
    return state_link(state_dir(STATE0_OF[wildcards.experiment], 0))


def prepared_file(dataset, model):
    """The file the prepare rule writes once a dataset and model are on this machine."""
    return layout.prepared_marker(RESULTS, dataset, model)


def prepared_marker(experiment):
    """The prepare rule's file for the experiment's dataset and model."""
    return prepared_file(experiment["dataset"], experiment["model_key"])


def get_prepared(wildcards):
    """The prepare marker of a training job. ancient(): preparing again (a changed model definition
    is checked again) retrains nothing by itself."""
    exp = EXPERIMENTS.get(wildcards.get("experiment")) or STATE0_RUNS[wildcards.run]
    return ancient(prepared_marker(exp))


def get_prepare_checks(wildcards):
    """A hash of what prepare checks for a dataset and model (the model's definition, and the prune
    settings of every group that trains it), so that a change reruns prepare and its checks.
    """
    checked = {
        "model": next(
            exp["model"]
            for exp in EXPERIMENTS.values()
            if exp["model_key"] == wildcards.model
        ),
        "prune": sorted(
            json.dumps([exp["method"], exp["prune"]], sort_keys=True)
            for exp in EXPERIMENTS.values()
            if exp["model_key"] == wildcards.model
        ),
    }
    text = json.dumps(checked, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def get_state0_resources(wildcards):
    return state_resources(STATE0_RUNS[wildcards.run], 0, RESOLVED.resources)


def get_state_resources(wildcards):
    return state_resources(
        EXPERIMENTS[wildcards.experiment], int(wildcards.state), RESOLVED.resources
    )


def get_state0_mem_mb(wildcards):
    # per node: each of its train.gpus processes holds a model and the data
    return get_state0_resources(wildcards)["mem_mb"] * _gpus_nodes(wildcards)[0]


def get_state0_runtime(wildcards):
    return get_state0_resources(wildcards)["runtime"]


def get_state_mem_mb(wildcards):
    return get_state_resources(wildcards)["mem_mb"] * _gpus_nodes(wildcards)[0]


def get_state_runtime(wildcards):
    return get_state_resources(wildcards)["runtime"]


# A multi-GPU state (train.gpus x train.nodes > 1) is one job with all its GPUs: Snakemake's `gpu`
# resource counts them (--resources gpu=N runs states side by side while their GPUs add up to N).
# Under SLURM (snakemake-executor-plugin-slurm) the job asks for `nodes` nodes and one task per GPU,
# and `mpi` tells the plugin that the job starts its tasks itself: prunebench.train.distributed
# runs srun inside the allocation. A one-GPU state has none of these but gpu=1, as before.
def _gpus_nodes(wildcards):
    exp = EXPERIMENTS.get(wildcards.get("experiment")) or STATE0_RUNS[wildcards.run]
    return exp["train"]["gpus"], exp["train"]["nodes"]


def _multi(value):
    def get(wildcards):
        gpus, nodes = _gpus_nodes(wildcards)
        return value(gpus, nodes) if gpus * nodes > 1 else None

    return get


def get_state_gpus(wildcards):
    gpus, nodes = _gpus_nodes(wildcards)
    return gpus * nodes


get_state_nodes = _multi(lambda gpus, nodes: nodes)
get_state_tasks = _multi(lambda gpus, nodes: gpus * nodes)
get_state_tasks_per_gpu = _multi(lambda gpus, nodes: 1)
get_state_mpi = _multi(lambda gpus, nodes: "srun")


# The GPU resources of the training rules. Snakemake calls a resource function once per job (and a
# dry run prints them all), so where no state has more than one GPU they are plain values: gpu=1 and
# none of the multi-GPU ones, what the functions would give every job.
if any(
    run["train"]["gpus"] * run["train"]["nodes"] > 1
    for run in (*STATE0_RUNS.values(), *EXPERIMENTS.values())
):
    STATE_GPU_RESOURCES = dict(
        gpu=get_state_gpus,
        nodes=get_state_nodes,
        tasks=get_state_tasks,
        tasks_per_gpu=get_state_tasks_per_gpu,
        mpi=get_state_mpi,
    )
else:
    STATE_GPU_RESOURCES = dict(gpu=1)


def get_previous_state(wildcards):
    """State k trains from state k-1's last checkpoint (and state 0's init weights when rewinding)."""
    exp, k = wildcards.experiment, int(wildcards.state)
    if k >= num_states(exp):
        raise ValueError(
            f"{exp} has {num_states(exp)} states (0..{num_states(exp) - 1}); state {k} does not exist"
        )
    previous, first = state_link(state_dir(exp, k - 1)), state_link(state_dir(exp, 0))
    inputs = {
        "previous": previous["last"],
        "previous_summary": previous["summary"],
        "prepared": get_prepared(wildcards),
    }
    if EXPERIMENTS[exp]["prune"]["rewind"] == "init":
        inputs.update(init=first["init"], init_summary=first["summary"])
    return inputs


def get_state_summaries(experiments=None):
    """summary.json of every state of the given experiments (all by default)."""
    return [
        state_file(exp, k, SUMMARY)
        for exp in (EXPERIMENTS if experiments is None else experiments)
        for k in range(num_states(exp))
    ]


# The (run, state) folders whose throughput measure_state times (measure.states: by default the
# last state of each experiment and the dense state 0 it is compared against).
TIMED = RESOLVED.timed_states()


def get_throughputs(experiments=None):
    """throughput.json of every timed state of the given experiments (all by default)."""
    timed = TIMED if experiments is None else RESOLVED.timed_states(experiments)
    return [state_file(name, k, THROUGHPUT) for name, k in timed]


# The runs and experiments whose state folders are timed (measure_state's {name} wildcard).
MEASURED_NAMES = sorted({name for name, _ in TIMED})


def get_measure_settings(wildcards):
    """measure_state's parameter (its rerun trigger): the settings of how a state is timed, not which
    states are (`states`: choosing more or fewer states retimes none of those already timed).
    """
    exp = EXPERIMENTS.get(wildcards.name) or STATE0_RUNS[wildcards.name]
    return {k: v for k, v in exp["measure"].items() if k != "states"}


def get_measure_threads(wildcards):
    """measure_state's threads: every core of --cores, so that the local scheduler runs no other job
    (a training job above all) beside a timing. A cluster executor runs without --cores, each job in
    an allocation of its own: there it asks for 4 CPUs, as a training state does (profiles/slurm).
    """
    try:
        return workflow.cores
    except WorkflowError:
        return 4


def get_final_state(wildcards):
    """The last state's checkpoint and summary of an experiment (what export_compact slims), and
    its throughput when it is timed."""
    exp = wildcards.experiment
    final = state_dir(exp, num_states(exp) - 1)
    link = state_link(final)
    files = {"checkpoint": link["last"], "summary": link["summary"]}
    if (exp, num_states(exp) - 1) in TIMED:
        files["throughput"] = state_file(exp, num_states(exp) - 1, THROUGHPUT)
    return files


def get_compact_models():
    """The compact model of every experiment's final state."""
    return [compact_file(exp, COMPACT_MODEL) for exp in EXPERIMENTS]


def renderer_fingerprint():
    """sha256 of the code that renders the reports (the report package, its templates, the report
    scripts): the report rules' parameter, so that a prunebench whose reports read differently rewrites
    them, while the "code" rerun trigger, which would also retrain every state, stays off (profiles/default).
    """
    from importlib.util import find_spec

    (package,) = find_spec("prunebench.report").submodule_search_locations
    files = [
        *sorted(Path(package).rglob("*.py")),
        *sorted(Path(package).rglob("*.j2")),
        *sorted(Path(workflow.basedir, "workflow", "scripts").glob("report_*.py")),
    ]
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


RENDERER = renderer_fingerprint()


# One comparison report per dataset x model of the matrix.
COMPARISONS = sorted(
    {(exp["dataset"], exp["model_key"]) for exp in EXPERIMENTS.values()}
)


def comparison_report(dataset, model):
    return layout.comparison_report(RESULTS, dataset, model)


def comparison_plot(dataset, model, name):
    """A plot of a comparison report, in the report's plot folder."""
    return f"{layout.comparison_plot_dir(RESULTS, dataset, model)}/{name}.png"


def comparison_experiments(dataset, model):
    return {
        name: exp
        for name, exp in EXPERIMENTS.items()
        if exp["dataset"] == dataset and exp["model_key"] == model
    }


def get_reference_summaries(experiments):
    """summary.json of the dense state 0 each experiment is compared against (not among its own)."""
    runs = {RESOLVED.reference_of[exp] for exp in experiments}
    return [state_file(run, 0, SUMMARY) for run in sorted(runs - set(experiments))]


def get_comparison_summaries(wildcards):
    experiments = comparison_experiments(wildcards.dataset, wildcards.model)
    return get_state_summaries(experiments) + get_reference_summaries(experiments)


def get_comparison_throughputs(wildcards):
    return get_throughputs(comparison_experiments(wildcards.dataset, wildcards.model))


def get_comparison_experiments(wildcards):
    return comparison_experiments(wildcards.dataset, wildcards.model)


def get_comparison_reports():
    return [comparison_report(d, m) for d, m in COMPARISONS]


def get_index_entries():
    """(dataset, model, report path) of every comparison, for the index's links."""
    return [[d, m, comparison_report(d, m)] for d, m in COMPARISONS]


def get_announcements():
    """The console line of every state, trained once each: a shared state 0 in its run, not its copies."""
    states = [(run, 0) for run in STATE0_RUNS] + [
        (exp, k) for exp in EXPERIMENTS for k in range(1, num_states(exp))
    ]
    return [f"{LOGS}/states/{name}/state{k}.txt" for name, k in states]


def get_final_targets():
    return [
        *get_announcements(),
        report_file(SUMMARY_REPORT),
        report_file(INDEX_REPORT),
        *get_comparison_reports(),
        *get_compact_models(),
        *get_throughputs(),
    ]
