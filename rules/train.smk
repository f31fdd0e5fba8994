# One job per prune state: state k reads state k-1's last.pt and writes its own checkpoints.
# A training rule's params are the experiment's name and its training hash: only a setting that
# changes what the state trains reruns it (the job resolves the experiment from the config itself).
# One thread per state (per process of a multi-GPU state, common.smk): on a GPU the data and its augmentation live on the device, so
# `--cores 4 --resources gpu=4` runs four states at once. Give CPU-only runs more with
# `--set-threads train_state0=N train_state=N` (profiles/slurm asks SLURM for 4 CPUs per state).


# State 0 of a run: shared/{group}-{dataset}-{model}-s{seed} for the methods that share it, or an
# experiment of its own (see STATE0_OF in common.smk).
rule train_state0:
    input:
        prepared=get_prepared,
    output:
        **state_outputs("{run}", 0),
    log:
        f"{LOGS}/train_state/{{run}}/state0.log",
    benchmark:
        f"{BENCHMARKS}/train_state/{{run}}/state0.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **STATE_GPU_RESOURCES,
        mem_mb=get_state0_mem_mb,
        runtime=get_state0_runtime,
    params:
        experiment="{run}",
        config_hash=get_state0_training_hash,
        recovery=recovery_dir("{run}", 0),
    script:
        "../workflow/scripts/train_state.py"


# An experiment's own copy of its shared state 0, relabelled with its name, method and config.
rule share_state0:
    input:
        unpack(get_shared_state0),
    output:
        **state_outputs("{experiment}", 0),
    log:
        f"{LOGS}/share_state0/{{experiment}}.log",
    wildcard_constraints:
        experiment=one_of(SHARING),
    conda:
        CONDA_ENV
    params:
        experiment="{experiment}",
        config_hash=get_training_hash,
    script:
        "../workflow/scripts/share_state0.py"


rule train_state:
    input:
        unpack(get_previous_state),
    output:
        **state_outputs("{experiment}", "{state}"),
    log:
        f"{LOGS}/train_state/{{experiment}}/state{{state}}.log",
    benchmark:
        f"{BENCHMARKS}/train_state/{{experiment}}/state{{state}}.tsv"
    wildcard_constraints:
        state=r"[1-9]\d*",
    conda:
        CONDA_ENV
    threads: 1
    resources:
        **STATE_GPU_RESOURCES,
        mem_mb=get_state_mem_mb,
        runtime=get_state_runtime,
    params:
        experiment="{experiment}",
        config_hash=get_training_hash,
        recovery=recovery_dir("{experiment}", "{state}"),
    script:
        "../workflow/scripts/train_state.py"


# The dense vs compact throughput of a finished state, timed on the device it trains on (a GPU job),
# apart from the training: the measure settings are its only parameter, so changing them retimes
# every state and retrains none. State 0 of a shared run is timed once, in the run's folder.
# It holds every core of --cores (get_measure_threads): locally nothing else runs beside a timing.
rule measure_state:
    input:
        last=ancient(state_file("{name}", "{state}", LAST)),
        summary=state_file("{name}", "{state}", SUMMARY),
    output:
        throughput=state_file("{name}", "{state}", THROUGHPUT),
    log:
        f"{LOGS}/measure_state/{{name}}/state{{state}}.log",
    wildcard_constraints:
        name=one_of(MEASURED_NAMES),
    conda:
        CONDA_ENV
    threads: get_measure_threads
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=30,
    params:
        measure=get_measure_settings,
    script:
        "../workflow/scripts/measure_state.py"


# One line per finished state in Snakemake's own console, wherever the state ran (a SLURM job's output
# goes to that job's log): a local job reads the state's summary, prints its line and keeps it.
rule announce_state:
    input:
        summary=state_file("{name}", "{state}", SUMMARY),
    output:
        line=f"{LOGS}/states/{{name}}/state{{state}}.txt",
    log:
        f"{LOGS}/announce_state/{{name}}/state{{state}}.log",
    wildcard_constraints:
        name=one_of({*STATE0_RUNS, *EXPERIMENTS}),
    run:
        announce_state(input.summary, output.line)
