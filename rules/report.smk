# Reports built from the states' summary files.


rule report_summary:
    input:
        summaries=get_state_summaries(),
    output:
        report=f"{RESULTS}/reports/summary.md",
    log:
        "logs/report_summary.log",
    conda:
        "../envs/prunebench.yaml"
    script:
        "../workflow/scripts/report_summary.py"
