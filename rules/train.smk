# One job per prune state: state k reads state k-1's last.pt and writes its own checkpoints.
# One thread per state: on a GPU the data and its augmentation live on the device, so
# `--cores 4 --resources gpu=4` runs four states at once. Give CPU-only runs more with
# `--set-threads train_state0=N train_state=N` (profiles/slurm asks SLURM for 4 CPUs per state).


rule train_state0:
    output:
        last=f"{RESULTS}/{{experiment}}/state0/last.pt",
        best=f"{RESULTS}/{{experiment}}/state0/best.pt",
        init=f"{RESULTS}/{{experiment}}/state0/init.pt",
        metrics=f"{RESULTS}/{{experiment}}/state0/metrics.jsonl",
        summary=f"{RESULTS}/{{experiment}}/state0/summary.json",
    log:
        "logs/train_state/{experiment}/state0.log",
    benchmark:
        "benchmarks/train_state/{experiment}/state0.tsv"
    conda:
        "../envs/prunebench.yaml"
    threads: 1
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    params:
        experiment=get_experiment,
        recovery=get_recovery_dir,
    script:
        "../workflow/scripts/train_state.py"


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
        mem_mb=16000,
        runtime=240,
    params:
        experiment=get_experiment,
        recovery=get_recovery_dir,
    script:
        "../workflow/scripts/train_state.py"
