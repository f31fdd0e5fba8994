# Reports built from the states' summary and metrics files, each as Markdown and as HTML (tables
# rendered, plots embedded); `snakemake --report report.html` collects the HTML reports and the
# plots registered here with their captions.


rule report_summary:
    input:
        summaries=get_state_summaries(),
    output:
        report=report_file(SUMMARY_REPORT),
        html=report(
            report_file(SUMMARY_REPORT, ".html"),
            caption="../workflow/report/summary.rst",
            category="Reports",
        ),
    log:
        f"{LOGS}/report_summary.log",
    conda:
        CONDA_ENV
    params:
        renderer=RENDERER,
    script:
        "../workflow/scripts/report_summary.py"


rule report_comparison:
    input:
        summaries=get_comparison_summaries,
        throughput=get_comparison_throughputs,  # read beside the summaries (report.load)
    output:
        report=comparison_report("{dataset}", "{model}"),
        html=report(
            report_file(layout.comparison_name("{dataset}", "{model}"), ".html"),
            caption="../workflow/report/comparison.rst",
            category="Reports",
            subcategory="{dataset} · {model}",
        ),
        pareto=report(
            comparison_plot("{dataset}", "{model}", "pareto"),
            caption="../workflow/report/pareto.rst",
            category="Plots",
            subcategory="{dataset} · {model}",
        ),
        accuracy_vs_state=report(
            comparison_plot("{dataset}", "{model}", "accuracy_vs_state"),
            caption="../workflow/report/accuracy_vs_state.rst",
            category="Plots",
            subcategory="{dataset} · {model}",
        ),
        accuracy_vs_cost=report(
            comparison_plot("{dataset}", "{model}", "accuracy_vs_cost"),
            caption="../workflow/report/accuracy_vs_cost.rst",
            category="Plots",
            subcategory="{dataset} · {model}",
        ),
        training_curves=report(
            comparison_plot("{dataset}", "{model}", "training_curves"),
            caption="../workflow/report/training_curves.rst",
            category="Plots",
            subcategory="{dataset} · {model}",
        ),
    log:
        f"{LOGS}/report_comparison/{{dataset}}_{{model}}.log",
    wildcard_constraints:
        dataset=one_of({d for d, _ in COMPARISONS}),
        model=one_of({m for _, m in COMPARISONS}),
    conda:
        CONDA_ENV
    params:
        experiments=get_comparison_experiments,
        renderer=RENDERER,
    script:
        "../workflow/scripts/report_comparison.py"


rule report_index:
    input:
        summaries=get_state_summaries(),
        comparisons=get_comparison_reports(),
    output:
        index=report_file(INDEX_REPORT),
        html=report(
            report_file(INDEX_REPORT, ".html"),
            caption="../workflow/report/index.rst",
            category="Reports",
        ),
    log:
        f"{LOGS}/report_index.log",
    conda:
        CONDA_ENV
    params:
        experiments=EXPERIMENTS,
        reports=get_index_entries(),
        renderer=RENDERER,
    script:
        "../workflow/scripts/report_index.py"
