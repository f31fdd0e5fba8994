# Physically slim models: the final state of every experiment exported without its masks.


rule export_compact:
    input:
        unpack(get_final_state),
    output:
        model=compact_file("{experiment}", COMPACT_MODEL),
        cost=compact_file("{experiment}", COMPACT_COST),
    log:
        f"{LOGS}/export_compact/{{experiment}}.log",
    conda:
        CONDA_ENV
    params:
        experiment="{experiment}",
        config_hash=get_training_hash,
    script:
        "../workflow/scripts/export_compact.py"
