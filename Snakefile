# prunebench: iterative structured-pruning experiments. This file only wires the workflow together;
# the rules live in rules/, the logic in the prunebench package (src/prunebench).
import os

from snakemake.utils import min_version

min_version("9.0")

# The checkout this workflow runs from: envs/prunebench.post-deploy.sh installs prunebench from it
# into the environments of `--sdm conda` (Snakemake creates them in this process). Set, not read:
# the `envvars:` directive asserts variables the user must define, which this one is not.
os.environ.update(PRUNEBENCH_SOURCE=workflow.basedir)


# config.yaml (the reference matrix) is the config unless `--configfile X` names another, which
# replaces it rather than being merged into it (two matrices would mix). `--config key=value` applies
# on top of either, as in any Snakemake workflow.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/prepare.smk"
include: "rules/train.smk"
include: "rules/report.smk"
include: "rules/export.smk"


# Reports and exports take seconds: on a cluster they run where Snakemake runs, not as jobs.
# prepare downloads: it runs there because compute nodes may have no internet.
localrules:
    all,
    prepare,
    report_summary,
    report_comparison,
    report_index,
    export_compact,
    share_state0,
    announce_state,


rule all:
    default_target: True
    input:
        get_final_targets(),


onsuccess:
    print(f"prunebench: the reports are in {RESULTS}/reports/index.md (and index.html)")
