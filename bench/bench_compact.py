"""Dense vs compact: MACs ratio and measured inference throughput, side by side.

    PYTHONPATH=src python bench/bench_compact.py                      # ViT-S 32px/patch 4 and the demo ViT
    PYTHONPATH=src python bench/bench_compact.py --device cuda --amp --compile true --json bench/results/compact_gpu.json

Each model loses ``--sparsity`` of its heads and of its MLP neurons (global L1 ranking, as the
reference setup does, on randomly initialised weights: the widths are what matter for speed). The
goal of issue 3: measured speedup at batch 32 and 128 >= 0.85x the MACs ratio on CPU, >= 0.6x on an H100;
issue 13: compact ViT-S at batch 128 >= 0.7x its MACs ratio on an H100/H200. ``--compile`` also times
both models compiled (``measure.compile``: auto = on CUDA only), one table row per mode.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from prunebench.export.compact import compact_model
from prunebench.export.measure import measures
from prunebench.export.throughput import compile_enabled
from prunebench.io import atomic_write_text
from prunebench.models import build_model, model_spec
from prunebench.pruning.budget import choose_masks
from prunebench.pruning.groups import full_masks, groupsets_of

MODELS = {
    "vit_small_32_p4": {"arch": "vit_small_patch16_224", "img_size": 32, "patch_size": 4},
    "demo_vit": {
        "arch": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 4,
        "kwargs": {"embed_dim": 96, "depth": 4, "num_heads": 3},
    },
}  # fmt: skip


def pruned(key: str, sparsity: float, round_to: int):
    torch.manual_seed(0)
    spec = model_spec(MODELS[key], 10)
    model = build_model(spec).eval()
    groupsets = groupsets_of(model, ["heads", "neurons"])
    # the workflow's own selection, as for the last state of a two-state chain (density 1 - sparsity)
    prune_cfg = {"states": 2, "target_sparsity": sparsity, "schedule": "geometric",
                 "importance": "l1", "ranking": "global", "round_to": round_to}  # fmt: skip
    _, keep = choose_masks(model, groupsets, full_masks(groupsets), prune_cfg, state=1)
    compact, cspec = compact_model(model, spec, keep)
    return spec, model, compact, cspec


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--sparsity", type=float, default=0.7)
    parser.add_argument("--round-to", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on GPU")
    parser.add_argument(
        "--compile", choices=["auto", "true", "false"], default="auto",
        help="also time compiled inference (torch.compile; CUDA graphs on GPUs): auto = on CUDA only",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write every figure (and pass) to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    compile_ = {"auto": "auto", "true": True, "false": False}[args.compile]

    header = "| model | round_to | mode | params dense -> compact | MMACs dense -> compact | MACs ratio |"
    header += "".join(f" b{b} dense / compact img/s | b{b} speedup (x MACs ratio) |" for b in args.batch_sizes)
    rows, meta, records = [], None, []
    for key in args.models:
        for step in args.round_to:
            start = time.perf_counter()
            spec, dense, compact, cspec = pruned(key, args.sparsity, step)
            timing = {"batch_sizes": args.batch_sizes, "warmup": args.warmup, "repeats": args.repeats,
                      "amp": args.amp, "compile": compile_}  # fmt: skip
            m = measures(dense, compact, spec, cspec, timing, args.device)  # what a state's summary records
            (dc, cc), tp = (m["cost"]["dense"], m["cost"]["compact"]), m["throughput"]
            ratio = dc["macs"] / cc["macs"]
            meta = tp
            neurons = sorted({w["neuron"] for w in cspec["widths"].values()})
            heads = [w["head"] for w in cspec["widths"].values()]
            records.append({"model": key, "round_to": step, "heads": heads, "neurons": neurons, "cost": m["cost"],
                            "macs_ratio": ratio, "throughput": tp})  # fmt: skip
            for mode, timed in (("eager", tp), ("compiled", tp.get("compiled"))):
                if not timed:
                    continue
                row = (
                    f"| {key} | {step} | {mode} | {dc['params']:,} -> {cc['params']:,} | "
                    f"{dc['macs'] / 1e6:.1f} -> {cc['macs'] / 1e6:.1f} | {ratio:.2f}x |"
                )
                for b in args.batch_sizes:
                    if "error" in timed:
                        row += " - | - |"
                        continue
                    d, c = timed["dense"][str(b)], timed["compact"][str(b)]
                    row += f" {d:.0f} / {c:.0f} | {c / d:.2f}x ({c / d / ratio:.2f}) |"
                if "error" in timed:
                    row += f" ({timed['error']})"
                rows.append(row)
            print(
                f"{key} round_to={step}: heads per block {heads}, MLP widths {neurons[:3]}..{neurons[-3:]} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    compiled = compile_enabled(compile_, args.device)
    print(f"\ndevice: {meta['device']}, dtype {meta['dtype']}, threads {meta['threads']}, versions {meta['versions']}")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    print("\n".join(rows))
    result = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "compiled": compiled, "results": records}  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
