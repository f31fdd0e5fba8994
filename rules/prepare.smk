# Before any training job: check the model (built on the `meta` device, which imports torch and
# timm, so not in the Snakemake process) and fetch its dataset and pretrained weights where
# Snakemake runs, which usually has internet; the jobs, maybe on offline nodes, never download.
# Its params are a hash of what it checks: a changed model definition or prune setting is checked
# again before the jobs it concerns; the jobs take the marker as ancient(), so that alone retrains nothing.
rule prepare:
    output:
        prepared_file("{dataset}", "{model}"),
    log:
        f"{LOGS}/prepare/{{dataset}}-{{model}}.log",
    conda:
        CONDA_ENV
    params:
        checks=get_prepare_checks,
    script:
        "../workflow/scripts/prepare.py"
