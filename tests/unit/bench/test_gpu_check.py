"""bench/gpu_check.py --smoke: every section's code path, tiny, on the CPU, compiled through AOTAutograd
(backend aot_eager) in a state's order; a failing section is reported and the others still run; the
table carries the issues' goals beside the figures; the command exits 0 when every section ran."""

import importlib.util
import json
import os
import subprocess
import sys

from tests.conftest import REPO


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_measures_every_section_and_survives_a_failing_one(tmp_path, monkeypatch, capsys):
    gc = load()

    def broken(ctx):
        ctx.save("eval_images", 100)  # measured before the failure: kept
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setitem(gc.RUNNERS, "overheads", broken)
    original = gc.train_item

    def one_item_fails(ctx, mode, name, *args):
        if (mode, name) == ("compiled", "ViT-S/16@224"):
            raise RuntimeError("compile failed")
        return original(ctx, mode, name, *args)

    monkeypatch.setattr(gc, "train_item", one_item_fails)
    # the compile section (fresh processes) is the next test's
    result = gc.main(["--smoke", "--out", str(tmp_path), "--sections", "train", "overheads", "compact"])
    sections = result["sections"]
    assert sections["train"]["status"] == "ok" and sections["compact"]["status"] == "ok"
    assert result["ok"] is False  # a section failed
    assert sections["overheads"]["status"] == "failed" and "illegal memory access" in sections["overheads"]["error"]
    assert sections["overheads"]["results"] == {"eval_images": 100}
    train = sections["train"]["results"]
    for name, mode in [*((n, m) for n in gc.MODELS for m in ("eager", "compiled")), ("ViT-S/4@32", "graphs")]:
        if (name, mode) == ("ViT-S/16@224", "compiled"):  # failed: reported, and the next item ran
            assert train[f"{name}|{mode}|error"] == "RuntimeError: compile failed"
            continue
        for v in ("dense", "refill", "rsst", "slim"):
            assert train[f"{name}|{mode}|{v}"]["img_s"] > 0
        assert f"{name}|{mode}|rsst_ops_percent" in train and train[f"{name}|{mode}|slim_speedup"] > 0
        if mode != "eager":  # compiled through AOTAutograd in a state's order: evaluation, then training
            assert train[f"{name}|{mode}|graphs"] == 2 and train[f"{name}|{mode}|graph_breaks"] == 0
            assert train[f"{name}|{mode}|recompiles"] == 0 and train[f"{name}|{mode}|compile_seconds"] > 0
    compact = sections["compact"]["results"]["ViT-S/4@32|round_to 8"]
    assert compact["macs_ratio"] > 1 and set(compact["compiled"]) == {"1", "4"}
    table = (tmp_path / "gpu_check.md").read_text()
    assert json.loads((tmp_path / "gpu_check.json").read_text())["sections"]["train"]["status"] == "ok"
    assert "| overheads | failed (RuntimeError: CUDA error" in table
    assert "| train ViT-S/16@224, compiled | failed: RuntimeError: compile failed |" in table
    assert "| slim training vs masked (Refill, ~50 % of groups), ViT-S/4@32, eager |" in table
    assert ">= 15,000 (aim 25,000) | n/a (not a GPU) |" in table and ">= 0.7 x MACs ratio" in table
    assert "| graphs / graph breaks / recompiles after, ViT-S/4@32, compiled (eval, then train) | 2 / 0 / 0 |" in table
    assert set(sections["compact"]["results"]) == {"ViT-S/4@32|round_to 8", "ViT-S/4@32|round_to 1"}
    out = capsys.readouterr().out
    assert table in out and "launches/step outside the compiled model, rsst - dense: +3 (<= 10: PASS)" in out
    assert result["launches"]["excess_over_dense"] == {"refill": 2, "rsst": 3}


def test_the_command_compiles_cold_then_warm_in_fresh_processes_and_exits_0(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--smoke", "--sections", "compile", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["ok"] is True and result["environment"]["smoke"] is True
    for run in ("cold", "warm"):  # aot_eager: AOTAutograd's graphs, nothing kept on disk
        probe = result["sections"]["compile"]["results"][f"compile|{run}"]
        assert (probe["graphs"], probe["graph_breaks"]) == (2, 0) and probe["compile_seconds"] > 0
        assert probe["cache"]["fx_graph_hits"] == probe["cache"]["aot_autograd_hits"] == 0
    assert "| compile, warm cache, ViT-S/4@32 (default): Dynamo compile" in proc.stdout


def test_a_section_past_its_time_limit_is_reported(tmp_path):
    gc = load()
    result = gc.main(["--smoke", "--out", str(tmp_path), "--sections", "train", "compact", "--scale", "0"])
    assert {s["status"] for s in result["sections"].values()} == {"time limit"}
    assert "| train | time limit (time limit reached before" in (tmp_path / "gpu_check.md").read_text()


def test_the_goal_verdicts():
    gc = load()
    assert gc.verdict(True, True) == "PASS" and gc.verdict(False, True) == "FAIL"
    assert gc.verdict(True, False) == "n/a (not a GPU)" and gc.verdict(None, True) == "-"


def test_a_graph_break_or_a_recompile_fails_on_any_device():
    gc = load()
    key = "ViT-S/4@32|compiled"
    figures = {f"{key}|first_eval_seconds": 1.0, f"{key}|first_epoch_seconds": 2.0, f"{key}|compile_seconds": 3.0}
    for graphs, breaks, again, verdict in ((2, 0, 0, "PASS"), (3, 1, 0, "FAIL"), (2, 0, 1, "FAIL")):
        results = {**figures, f"{key}|graphs": graphs, f"{key}|graph_breaks": breaks, f"{key}|recompiles": again}
        rows = gc.goal_static_shapes({"train": {"results": results}}, on_gpu=False)
        assert rows[0].endswith(f"| 2 / 0 / 0 | {verdict} |"), rows[0]
    assert gc.check(None) == "-"


def test_the_state_share_line_passes_below_5_percent_of_an_epoch():
    gc = load()
    measured = {"val_seconds": 0.2, "test_seconds": 0.4, "resume_copy_seconds": 0.02, "best_copy_seconds": 0.01}
    r = {f"state|{k}": v for k, v in {**measured, "train_img_s": 9000.0, "epochs": 60}.items()}  # a 5 s epoch
    lines = gc.state_share_lines({"overheads": {"results": r}}, on_gpu=True)
    # every: (0.2 + 0.4 + 0.03) / 5 = 12.6 %; best_and_final: (0.2 + 0.03 + 2 * 0.4 / 60) / 5 = 4.87 %
    assert "eval_test: every (before) | 12.60 | < 5 % | - |" in lines[1]
    assert "eval_test: best_and_final (default) | 4.87 | < 5 % | PASS |" in lines[2]
    assert "not measured" in gc.state_share_lines({}, on_gpu=True)[0]
