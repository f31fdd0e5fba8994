"""bench/bench_compact.py: one table row per round_to and timing mode, every figure in its JSON."""

import importlib.util
import json

from tests.conftest import REPO


def test_tiny_compact_benchmark_writes_its_json(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_compact", REPO / "bench" / "bench_compact.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "compact.json"
    args = ["--models", "demo_vit", "--round-to", "1", "8", "--batch-sizes", "2", "--warmup", "0", "--repeats", "1"]
    result = bench.main([*args, "--compile", "auto", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["compiled"] is False  # auto: eager only on the CPU
    assert [r["round_to"] for r in result["results"]] == [1, 8]
    assert all(n % 8 == 0 for n in result["results"][1]["neurons"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| demo_vit")]
    assert len(table) == 2 and all("| eager |" in line for line in table)
