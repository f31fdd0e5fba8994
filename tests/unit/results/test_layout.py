"""The results folder's layout: the paths the rules, the trainer and the reports share, spelled once."""

import subprocess
import sys
from pathlib import Path

from prunebench.results import layout
from prunebench.results.layout import StatePaths


def test_the_rules_paths_keep_their_spelling_wildcards_included():
    assert layout.state_dir("results", "{run}", 0) == "results/{run}/state0"
    assert layout.state_file("demo/results", "{experiment}", "{state}", layout.LAST) == (
        "demo/results/{experiment}/state{state}/last.pt"
    )
    assert layout.recovery_dir("results", "{experiment}", "{state}") == "results/{experiment}/recovery/state{state}"
    assert layout.compact_file("results", "x", layout.COMPACT_MODEL) == "results/x/compact/model.pt"
    assert layout.prepared_marker("results", "{dataset}", "{model}") == "results/.prepared/{dataset}-{model}.json"
    assert layout.report_file("results", layout.INDEX_REPORT) == "results/reports/index.md"
    assert layout.report_file("results", layout.SUMMARY_REPORT, ".html") == "results/reports/summary.html"
    assert layout.comparison_report("results", "{dataset}", "{model}") == "results/reports/{dataset}_{model}.md"
    assert layout.comparison_plot_dir("results", "cifar10", "vit") == "results/reports/cifar10_vit"
    assert layout.shared_run("g-cifar10-vit-s0") == "shared/g-cifar10-vit-s0"
    assert layout.output_folders("demo") == layout.OutputPaths("demo/results", "demo/logs", "demo/benchmarks")


def test_state_paths_under_a_results_folder_and_what_reads_it_back(tmp_path):
    paths = StatePaths.under(tmp_path, "shared/g-s0", 1)
    assert paths.out_dir == tmp_path / "shared/g-s0/state1"
    assert paths.recovery_dir == tmp_path / "shared/g-s0/recovery/state1" == layout.recovery_dir_of(paths.out_dir)
    assert (paths.previous, paths.init) == (
        tmp_path / "shared/g-s0/state0/last.pt",
        tmp_path / "shared/g-s0/state0/init.pt",
    )
    assert paths.resume == paths.recovery_dir / "resume.pt" and paths.best_at(3).name == "best-epoch3.pt"
    assert layout.is_shared(paths.out_dir) and layout.run_of(paths.out_dir) == "shared/g-s0"
    assert layout.state_of(paths.out_dir) == 1 and layout.state_of(tmp_path) == -1
    assert StatePaths.under(tmp_path, "x", 0).previous is None
    assert layout.retrain_command(paths.out_dir) == "prunebench retrain --config CONFIG shared/g-s0 --from-state 1"
    for run, k in (("x", 0), ("x", 2), ("shared/g-s0", 0)):
        (Path(layout.state_dir(str(tmp_path), run, k)) / layout.SUMMARY).parent.mkdir(parents=True)
        (Path(layout.state_dir(str(tmp_path), run, k)) / layout.SUMMARY).write_text("{}")
    assert [p.relative_to(tmp_path).as_posix() for p in layout.find_summaries(tmp_path)] == [
        "x/state0/summary.json", "x/state2/summary.json", "shared/g-s0/state0/summary.json",
    ]  # fmt: skip
    assert layout.has_states(tmp_path) and not layout.has_states(tmp_path / "x")


def test_the_file_contract_imports_no_torch():
    code = (
        "import sys, prunebench.results, prunebench.results.layout, prunebench.results.metrics, "
        "prunebench.results.summary, prunebench.results.throughput, prunebench.results.checkpoint\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'pandas')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
