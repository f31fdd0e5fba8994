# One job per prune state: state k reads state k-1's last.pt and writes its own checkpoints.
# One thread per state: on a GPU the data and its augmentation live on the device, so
# `--cores 4 --resources gpu=4` runs four states at once. Give CPU-only runs more with
# `--set-threads train_state0=N train_state=N` (profiles/slurm asks SLURM for 4 CPUs per state).


# State 0 of a run: shared/{group}-{dataset}-{model}-s{seed} for the methods that share it, or an
# experiment of its own (see STATE0_OF in common.smk).
rule train_state0:
    input:
        prepared=get_prepared,
    output:
        last=f"{RESULTS}/{{run}}/state0/last.pt",
        best=f"{RESULTS}/{{run}}/state0/best.pt",
        init=f"{RESULTS}/{{run}}/state0/init.pt",
        metrics=f"{RESULTS}/{{run}}/state0/metrics.jsonl",
        summary=f"{RESULTS}/{{run}}/state0/summary.json",
    log:
        "logs/train_state/{run}/state0.log",
    benchmark:
        "benchmarks/train_state/{run}/state0.tsv"
    conda:
        "../envs/prunebench.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=get_state0_mem_mb,
        runtime=get_state0_runtime,
    params:
        experiment=get_state0_experiment,
        recovery=get_state0_recovery_dir,
    script:
        "../workflow/scripts/train_state.py"


# An experiment's own copy of its shared state 0, relabelled with its name, method and config.
rule share_state0:
    input:
        unpack(get_shared_state0),
    output:
        last=f"{RESULTS}/{{experiment}}/state0/last.pt",
        best=f"{RESULTS}/{{experiment}}/state0/best.pt",
        init=f"{RESULTS}/{{experiment}}/state0/init.pt",
        metrics=f"{RESULTS}/{{experiment}}/state0/metrics.jsonl",
        summary=f"{RESULTS}/{{experiment}}/state0/summary.json",
    log:
        "logs/share_state0/{experiment}.log",
    wildcard_constraints:
        experiment=one_of(SHARING),
    conda:
        "../envs/prunebench.yaml"
    params:
        experiment=get_experiment,
    script:
        "../workflow/scripts/share_state0.py"


rule train_state:
    input:
        unpack(get_previous_state),
    output:
        last=f"{RESULTS}/{{experiment}}/state{{state}}/last.pt",
        best=f"{RESULTS}/{{experiment}}/state{{state}}/best.pt",
        metrics=f"{RESULTS}/{{experiment}}/state{{state}}/metrics.jsonl",
        summary=f"{RESULTS}/{{experiment}}/state{{state}}/summary.json",
    log:
        "logs/train_state/{experiment}/state{state}.log",
    benchmark:
        "benchmarks/train_state/{experiment}/state{state}.tsv"
    wildcard_constraints:
        state=r"[1-9]\d*",
    conda:
        "../envs/prunebench.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=get_state_mem_mb,
        runtime=get_state_runtime,
    params:
        experiment=get_experiment,
        recovery=get_recovery_dir,
    script:
        "../workflow/scripts/train_state.py"
