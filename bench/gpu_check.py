"""One command that measures, on a GPU in under 9 minutes, what issues 13 and 24 set goals for (and slim training, issue 23).

    PYTHONPATH=src python bench/gpu_check.py --out bench/results/gpu_check     # on the GPU machine
    PYTHONPATH=src python bench/gpu_check.py --smoke --out /tmp/gpu_check      # the same code paths, tiny, on a CPU

Everything compiled is compiled as a state compiles it (``accel.settings.prepare_model``: static
shapes, Inductor) and run in a state's order: epoch 0's evaluation first, then training. ``--smoke``
runs tiny models on the CPU through AOTAutograd (backend ``aot_eager``: the tracing, functionalisation
and forward/backward partition a state's compile does, without Inductor's code generation), so that
the test suite exercises the compiled paths in seconds.

Sections (each with its own time limit; one that fails or runs out of time is reported and the
others still run; in the full run every section is a process of its own, so that a CUDA error or a
hang cannot take the others down):

- ``train``: training images/s of ViT-S/4@32 (timm ``vit_small_patch16_224`` at 32 px, patch 4) and
  ViT-S/16@224 (32 px CIFAR-sized images resized to 224 on the device, as ``config.yaml``'s reference
  setup), batch 128, prunebench's ``train_one_epoch``: dense, Refill (hard masks on ~50 % of every
  layer's groups) and RSST (hard masks + penalty on a further ~15 %), eager and ``torch.compile``d
  (plus ``mode="reduce-overhead"``, CUDA graphs, for ViT-S/4@32); the masking/penalty work timed
  alone and the RSST step against the dense one, as a share of a dense step; and slim training
  (``train.slim``: the slim model of Refill's alive groups, ``export.slim.slim_model``, with its own
  optimizer and no masks) against Refill's masked step: ``slim_speedup`` = slim img/s / masked img/s.
  Compiled, each model is first evaluated, then trained, as in a state: the graphs and graph breaks
  this compiles (a state's goal: one evaluation graph, one training graph, no break) and any graph
  the timed epochs and a second evaluation add (none);
- ``overheads``: one evaluation pass over a CIFAR-sized val + test (5k + 10k images,
  ``loop.evaluate``, eager and compiled) and one checkpoint write (model + optimizer, written and
  fsynced as resume.pt is) against one epoch of CIFAR training (45k images at the measured rate);
  and a state's per-epoch evaluation + checkpoint share at the default settings (issue 24,
  :func:`state_share`: ``train.eval_test: best_and_final``, background checkpoints), PASS below 5 %;
- ``compile``: a state's compile of ViT-S/4@32 (``train.compile_mode: auto``) cold, then warm: two
  fresh processes one after the other sharing one new compile cache folder (``train.compile_cache_dir``),
  each timing Dynamo's compile seconds, the first evaluation and the first epoch, and counting the
  FX graph and AOTAutograd cache hits; the warm compile against a 60-epoch state's training;
- ``compact``: ViT-S with 70 % of heads and MLP neurons removed, dense vs compact inference at batch
  1/32/128 (``torch.utils.benchmark``, paired rounds), eager and compiled (CUDA graphs on a GPU),
  ``prune.round_to`` 8 and 1: speedup / MACs ratio, which decides whether GPU runs should set
  ``prune.round_to: 8`` (bf16 tensor cores want widths in multiples of 8).

Writes ``gpu_check.md`` (the table, goals beside the figures: PASS/FAIL on a GPU for speeds, on any
device for graph counts) and ``gpu_check.json`` to ``--out`` and prints the table. Needs torch and
timm only (plus this repository on PYTHONPATH).

A new measurement is a function called from a section (or a section of its own: ``SECTIONS``,
``LIMITS``, ``RUNNERS``) that records its figures with ``ctx.save``, and a goal function appended to
``GOALS`` that turns them into the table's rows.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = ("train", "overheads", "compile", "compact")
# seconds per section in the full run (at most 9 minutes in all, usually less); --smoke: SMOKE_LIMIT each
LIMITS = {"train": 230, "overheads": 50, "compile": 170, "compact": 75}
SMOKE_LIMIT = 90  # seconds per section of --smoke, room for a CPU shared with other jobs
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR_TRAIN = 45_000

# the project's ViT-S definitions (config.yaml's vit_small at 224 px, and the 32 px / patch 4 variant)
MODELS = {
    "ViT-S/4@32": {"arch": "vit_small_patch16_224", "img_size": 32, "patch_size": 4},
    "ViT-S/16@224": {"arch": "vit_small_patch16_224", "img_size": 224, "patch_size": 16},
}
# --smoke: the same architectures cut to one thin block (seconds on a CPU)
SMOKE_KWARGS = {"embed_dim": 48, "depth": 1, "num_heads": 3}
TRAIN_GOALS = {"ViT-S/4@32": (15_000, 25_000), "ViT-S/16@224": (5_000, 8_000)}  # (goal, aim) train img/s
OVERHEAD_GOAL = 5.0  # % of a step (masks + RSST) or of an epoch (evaluation + checkpoint)
COMPACT_GOAL = 0.7  # compact ViT-S at batch 128: speedup >= 0.7 x the MACs ratio
STATE_GRAPHS = 2  # a compiled state's graphs: its evaluation's and its training step's (static shapes)
STATE_EPOCHS = 60  # a ViT-S/4@32 state (config.yaml): its training time at the measured rate ...
WARM_COMPILE_SHARE = 0.10  # ... of which a warm compile takes at most this share


class SectionTimeout(Exception):
    pass


class Ctx:
    """What a section needs: device, sizes, its deadline, and where its partial results go."""

    def __init__(self, args, section: str, limit: float):
        import torch

        self.torch = torch
        self.smoke = args.smoke
        self.device = torch.device(
            args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.out = Path(args.out)
        self.section = section
        self.deadline = time.monotonic() + limit
        self.results: dict = {}
        self.batch = 8 if args.smoke else 128

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise SectionTimeout(f"time limit reached before {what}")

    def save(self, key: str, value) -> None:
        """Record one figure and write the section's file at once (a later kill keeps what was measured)."""
        self.results[key] = value
        write_json(self.out / f"section_{self.section}.json", {"status": "running", "results": self.results})

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    @property
    def backend(self) -> str:
        """torch.compile's backend: Inductor; --smoke: AOTAutograd's forward and backward graphs run
        eagerly (``aot_eager``: the tracing a state does, without the C++ build of minutes on a CPU)."""
        return "aot_eager" if self.smoke else "inductor"

    def compile(self, model, mode: str = "default", family: str = "vit"):
        """``model`` compiled as a state compiles it (``prepare_model``: static shapes, the backend above)."""
        from prunebench.accel.settings import allow_recompiles, prepare_model

        allow_recompiles()  # every ViT shares timm's forward: past 8 graphs dynamo would run eager
        return prepare_model(model, family, self.device, compile=True, mode=mode, backend=self.backend)

    def spec(self, name: str) -> dict:
        from prunebench.models import model_spec

        cfg = dict(MODELS[name])
        if self.smoke:
            cfg["kwargs"] = SMOKE_KWARGS
            if cfg["img_size"] == 224:
                cfg["img_size"] = 64  # resized on the device as at 224; a tiny image keeps it fast
        return model_spec(cfg, 10)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)


def schema_defaults(section: str) -> dict:
    """The schema defaults of one config section (``train``, ``rsst``): the settings a state trains with."""
    from prunebench.config import load_schema

    def find(node):
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict) and section in props and "properties" in props[section]:
                return props[section]["properties"]
            for v in node.values():
                hit = find(v)
                if hit:
                    return hit
        return None

    props = find(load_schema())
    if not props:
        raise RuntimeError(f"no {section!r} section in the config schema")
    return {k: v["default"] for k, v in props.items() if "default" in v}


def synthetic_splits(n_train: int, n_val: int, n_test: int, seed: int = 0):
    """CIFAR-sized random uint8 images (speed does not depend on the pixels)."""
    import torch

    from prunebench.data import Splits

    g = torch.Generator().manual_seed(seed)
    n = n_train + n_val + n_test
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    a, b = n_train, n_train + n_val
    return Splits("synthetic", 10, x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], CIFAR_MEAN, CIFAR_STD)


# --- train ----------------------------------------------------------------------------------------


class Trainer:
    """One model, its optimizer and data on the device, and the masks of Refill and RSST."""

    def __init__(self, ctx: Ctx, name: str, steps: int):
        import torch

        from prunebench.accel.settings import configure_device, prepare_model
        from prunebench.data import DeviceData
        from prunebench.models import build_model
        from prunebench.pruning.groups import MaskedParams, groupsets_of, param_masks, random_masks
        from prunebench.pruning.penalty import RSSTPenalty
        from prunebench.train.loop import make_optimizer

        configure_device(ctx.device)
        torch.manual_seed(0)
        self.ctx, self.spec = ctx, ctx.spec(name)
        self.model = build_model(self.spec)
        prepare_model(self.model, self.spec["family"], ctx.device)  # no compile here: modes are ours
        self.cfg = {**schema_defaults("train"), "batch_size": ctx.batch, "warmup_epochs": 0}
        n_eval = 24 if ctx.smoke else 2_000  # val and test: a padded last batch, as a state's
        self.eval_batch = 16 if ctx.smoke else self.cfg["eval_batch_size"]
        self.data = DeviceData(synthetic_splits(ctx.batch * steps, n_eval, n_eval), ctx.device, self.spec["img_size"])
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.generator = torch.Generator(device=ctx.device).manual_seed(0)
        self.step = 0
        groupsets = groupsets_of(self.model, ["heads", "neurons"])
        g = torch.Generator().manual_seed(1)
        prev = random_masks(groupsets, 0.5, g)
        more = random_masks(groupsets, 0.85, g)
        self.hard = MaskedParams(self.model, param_masks(self.model, groupsets, prev))
        penalized = {k: prev[k] & ~more[k] for k in prev}
        # lambda grows over 1000 steps: non-zero (the penalty's work is done) from the first step
        self.penalty = RSSTPenalty.for_groups(self.model, groupsets, penalized, schema_defaults("rsst"), 1000)
        # slim training of Refill's masks: the narrowed model, its own optimizer, no masks (train.slim)
        from prunebench.export.slim import slim_model

        self.slim, _ = slim_model(self.model, prev)
        self.slim_optimizer = make_optimizer(self.slim, self.cfg)
        self.slim_net = self.slim
        self.net = self.model
        self.graphed = False  # self.net replays CUDA graphs (torch.compile's reduce-overhead)

    def evaluate(self) -> float:
        """One evaluation of val and test as a state's (padded batches, one read-back); its seconds."""
        from prunebench.train.loop import evaluate

        start = time.perf_counter()
        evaluate(self.net, self.data, ("val", "test"), self.eval_batch, self.cfg["amp"], graphed=self.graphed)
        return time.perf_counter() - start

    def epoch(self, variant: str) -> tuple[int, float]:
        from prunebench.train.loop import train_one_epoch

        hard = self.hard if variant in ("refill", "rsst") else None
        penalty = self.penalty if variant == "rsst" else None
        net, optimizer = (self.slim_net, self.slim_optimizer) if variant == "slim" else (self.net, self.optimizer)
        stats = train_one_epoch(
            net, self.data, optimizer, self.cfg, step0=self.step, total_steps=10**6, warmup_steps=0,
            generator=self.generator, hard=hard, gradient_hook=penalty, graphed=self.graphed,
        )  # fmt: skip
        self.step += stats["steps"]
        return stats["images"], stats["seconds"]

    def ops_seconds(self, reps: int) -> float:
        """Seconds per step of RSST's own work (mask grads, penalty, mask weights), timed alone."""
        self.ctx.sync()
        start = time.perf_counter()
        for _ in range(reps):
            self.hard.mask_grads()
            self.penalty.apply(self.step + 1)
            self.hard.mask_weights()
        self.ctx.sync()
        return (time.perf_counter() - start) / reps


def section_train(ctx: Ctx) -> None:
    steps = 1 if ctx.smoke else {"ViT-S/4@32": 25, "ViT-S/16@224": 12}
    rounds = 1 if ctx.smoke else 3
    variants = ("dense", "refill", "rsst", "slim")
    # eager of both models first: the compiled runs (a compile each) are the ones a time limit may cut;
    # "graphs" (torch.compile's reduce-overhead: CUDA graphs) last, for the launch-bound 32 px model
    plan = [(m, n) for m in ("eager", "compiled") for n in MODELS] + [("graphs", "ViT-S/4@32")]
    for mode, name in plan:
        ctx.check(f"{name} {mode}")
        try:
            train_item(ctx, mode, name, steps if ctx.smoke else steps[name], rounds, variants)
        except SectionTimeout:
            raise
        except Exception as exc:  # noqa: BLE001 (one item failed: reported, the next is tried)
            ctx.save(f"{name}|{mode}|error", f"{type(exc).__name__}: {str(exc)[:300]}")
        if ctx.device.type == "cuda":
            ctx.torch.cuda.empty_cache()


def train_item(ctx: Ctx, mode: str, name: str, n: int, rounds: int, variants: tuple[str, ...]) -> None:
    from prunebench.accel.compile_stats import compile_counts, compile_since

    t = Trainer(ctx, name, n)
    compile_mode = "reduce-overhead" if mode == "graphs" else "default"
    if mode != "eager":
        for key, value in compile_in_state_order(ctx, t, compile_mode).items():
            ctx.save(f"{name}|{mode}|{key}", value)
        if "slim" in variants:
            start = time.perf_counter()
            t.slim_net = ctx.compile(t.slim, compile_mode)
            t.epoch("slim")  # the slim model's own compilation
            ctx.save(f"{name}|{mode}|slim_compile_seconds", time.perf_counter() - start)
    compiled = compile_counts()  # every graph is compiled: the rounds (masks on and off) should add none
    for v in variants:  # warm-up (dense, refill and rsst share one compiled graph; slim has its own)
        t.epoch(v)
    ips: dict[str, list[float]] = {v: [] for v in variants}
    n_var = len(variants)
    for r in range(rounds):
        for v in variants[r % n_var :] + variants[: r % n_var]:
            images, seconds = t.epoch(v)
            ips[v].append(images / seconds)
        if r + 1 < rounds:
            ctx.check(f"{name} {mode} round {r + 2}")
    for v in variants:
        ctx.save(f"{name}|{mode}|{v}", {"img_s": statistics.median(ips[v]), "rounds": ips[v]})
    dense_step = ctx.batch / statistics.median(ips["dense"])
    ops = statistics.median(t.ops_seconds(1 if ctx.smoke else 20) for _ in range(3))
    ctx.save(f"{name}|{mode}|rsst_ops_percent", 100.0 * ops / dense_step)
    per_round = [d / r for d, r in zip(ips["dense"], ips["rsst"])]
    ctx.save(f"{name}|{mode}|rsst_step_percent", 100.0 * (statistics.median(per_round) - 1.0))
    if "slim" in variants:  # slim vs masked training of the same masks (Refill's ~50 %), round by round
        ctx.save(f"{name}|{mode}|slim_speedup", statistics.median(s / m for s, m in zip(ips["slim"], ips["refill"])))
    if mode != "eager":  # and a second evaluation, as the state's next epoch: nothing recompiles
        t.evaluate()
        ctx.save(f"{name}|{mode}|recompiles", compile_since(compiled)["graphs"])


def compile_in_state_order(ctx: Ctx, t: Trainer, mode: str) -> dict:
    """Compile ``t``'s dense model as a state does and run it in a state's order: epoch 0's evaluation
    first, then the first training epoch. Returns their seconds, Dynamo's compile seconds, the graphs
    and graph breaks (a state compiles exactly one evaluation and one training graph, with no graph
    break) and the compile cache's hits and misses (:mod:`prunebench.accel.compile_stats`)."""
    import torch._dynamo

    from prunebench.accel.compile_stats import compile_counts, compile_since

    torch._dynamo.reset()  # as in a state's own process: nothing compiled before it
    before = compile_counts()
    t.net = ctx.compile(t.model, mode)
    t.graphed = mode == "reduce-overhead"
    first_eval = t.evaluate()
    _, first_epoch = t.epoch("dense")
    stats = compile_since(before)
    return {
        "first_eval_seconds": first_eval, "first_epoch_seconds": first_epoch, "compile_seconds": stats["seconds"],
        "graphs": stats["graphs"], "graph_breaks": stats["graph_breaks"], "cache": stats["cache"],
    }  # fmt: skip


# --- compile --------------------------------------------------------------------------------------


def section_compile(ctx: Ctx) -> None:
    """A state's compile, cold and then warm: ViT-S/4@32 compiled as a state compiles it
    (``train.compile_mode: auto``) in a state's order, in two fresh processes one after the other that
    share one new compile cache folder (``train.compile_cache_dir``), as a workflow's first state and
    every later one do. --smoke compiles with aot_eager, which keeps nothing on disk: warm = cold."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gpu-check-compile-cache-") as cache:
        for run in ("cold", "warm"):
            ctx.check(f"the {run} compile")
            ctx.save(f"compile|{run}", compile_process(ctx, cache))


def compile_process(ctx: Ctx, cache: str) -> dict:
    """:func:`compile_probe` in a fresh process; its figures, and the process's seconds (imports too)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--compile-probe", cache, "--device", str(ctx.device)]
    start = time.perf_counter()
    # every cache the compile could read in this folder only (an environment's own folders would make
    # the cold run warm): Inductor's and AOTAutograd's, and Triton's kernels
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TRITON_CACHE_DIR": os.path.join(cache, "triton")}
    proc = subprocess.run(
        cmd + (["--smoke"] if ctx.smoke else []), capture_output=True, text=True, timeout=max(1.0, ctx.left()), env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the compile probe failed (exit {proc.returncode}): {proc.stderr[-1500:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - start
    return out


def compile_probe(args) -> dict:
    """In this fresh process: the compile cache at ``args.compile_probe``, then ViT-S/4@32 compiled
    and run in a state's order (:func:`compile_in_state_order`); its figures printed as JSON."""
    from prunebench.accel.settings import compile_mode_for, use_compile_cache

    use_compile_cache(args.compile_probe)  # before anything compiles, as a state does (the folder is set)
    ctx = Ctx(args, "compile", LIMITS["compile"])
    t = Trainer(ctx, "ViT-S/4@32", 2)
    out = compile_in_state_order(ctx, t, compile_mode_for("auto", t.spec["img_size"], ctx.device))
    out["mode"] = compile_mode_for("auto", t.spec["img_size"], ctx.device)
    print(json.dumps(out), flush=True)
    return out


# --- overheads ------------------------------------------------------------------------------------


def section_overheads(ctx: Ctx) -> None:
    import torch

    from prunebench.accel.settings import configure_device, prepare_model
    from prunebench.data import DeviceData
    from prunebench.models import build_model
    from prunebench.train.loop import evaluate, make_optimizer

    name = "ViT-S/4@32"
    configure_device(ctx.device)
    spec = ctx.spec(name)
    torch.manual_seed(0)
    model = build_model(spec)
    prepare_model(model, spec["family"], ctx.device)
    cfg = {**schema_defaults("train"), "batch_size": ctx.batch}
    n_val, n_test = (40, 60) if ctx.smoke else (5_000, 10_000)
    data = DeviceData(synthetic_splits(ctx.batch, n_val, n_test), ctx.device, spec["img_size"])
    eval_batch = 16 if ctx.smoke else cfg["eval_batch_size"]
    ctx.save("eval_images", n_val + n_test)
    for mode in ("eager", "compiled"):
        ctx.check(f"evaluation {mode}")
        try:
            net = model if mode == "eager" else ctx.compile(model)
            start = time.perf_counter()
            evaluate(net, data, ("val", "test"), eval_batch, cfg["amp"])  # warm-up (compiles the eval graph)
            ctx.save(f"eval|{mode}|first_seconds", time.perf_counter() - start)
            times = []
            for _ in range(2):
                start = time.perf_counter()
                evaluate(net, data, ("val", "test"), eval_batch, cfg["amp"])  # ends with a read-back: synced
                times.append(time.perf_counter() - start)
            ctx.save(f"eval|{mode}|seconds", min(times))
        except Exception as exc:  # noqa: BLE001 (reported; the checkpoint timing still runs)
            ctx.save(f"eval|{mode}|error", f"{type(exc).__name__}: {str(exc)[:300]}")
    # one optimizer step, so that the optimizer state (momentum) is in the checkpoint as in resume.pt
    opt = make_optimizer(model, cfg)
    model.train()
    x = torch.randn(2, 3, spec["img_size"], spec["img_size"], device=ctx.device)
    model(x).sum().backward()
    opt.step()
    ctx.sync()
    path = ctx.out / "checkpoint_probe.pt"
    for what, payload in (
        ("resume", lambda: {"model": model.state_dict(), "optimizer": opt.state_dict()}),
        ("best", lambda: {"model": model.state_dict()}),
    ):
        ctx.check(f"{what} checkpoint")
        times = []
        for _ in range(2):
            start = time.perf_counter()
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "wb") as f:  # as the workflow writes it: temporary file, fsync, rename
                torch.save(payload(), f)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
            times.append(time.perf_counter() - start)
        ctx.save(f"checkpoint|{what}|seconds", min(times))
        ctx.save(f"checkpoint|{what}|mb", path.stat().st_size / 2**20)
        path.unlink()
    # as a state writes resume.pt by default (train.background_checkpoints): the training thread is
    # blocked only while the tensors are copied to the host (into the previous copy's memory)
    from prunebench.train.writer import CheckpointWriter

    ctx.check("background checkpoint")
    blocked = []
    with CheckpointWriter(background=True) as writer:
        for _ in range(3):
            before = writer.blocked_seconds
            writer.save(path, {"model": model.state_dict(), "optimizer": opt.state_dict()})
            ctx.sync()
            blocked.append(writer.blocked_seconds - before)
            writer.wait()
    ctx.save("checkpoint|resume|background_blocked_seconds", min(blocked[1:]))
    path.unlink()
    state_share(ctx, model, opt, data, eval_batch, cfg)


def state_share(ctx: Ctx, model, opt, data, eval_batch: int, cfg: dict) -> None:
    """Issue 24: what evaluation and checkpoints cost a state per epoch at the default settings, as a
    share of one CIFAR epoch of ViT-S/4@32 (45k images at its training rate, timed here eagerly).

    Per epoch: a val pass (``train.eval_test: best_and_final``; 5k images), the copy of ``resume.pt``
    (model + optimizer) and of a best checkpoint (as if every epoch were a new best) into the writer's
    reused pinned buffers, each timed to a synchronized device (the copies run on the training
    stream); per state: two test passes (10k images: the last epoch's and the best's), spread over
    ``train.epochs`` epochs (the schema default). Beside it, the share with test evaluated at every
    epoch (``eval_test: every``, the behaviour before)."""
    import torch

    from prunebench.train.loop import evaluate
    from prunebench.train.writer import CheckpointWriter

    def timed(fn, reps: int = 2, setup=lambda: None) -> float:
        fn()  # warm-up: allocations, pinned buffers, cuDNN/BLAS choices
        times = []
        for _ in range(reps):
            setup()
            ctx.sync()
            start = time.perf_counter()
            fn()
            ctx.sync()
            times.append(time.perf_counter() - start)
        return min(times)

    ctx.check("state share: evaluation")
    for split in ("val", "test"):
        ctx.save(f"state|{split}_seconds", timed(lambda s=split: evaluate(model, data, (s,), eval_batch, cfg["amp"])))
    ctx.check("state share: checkpoint copies")
    folder = ctx.out / "state_share_probe"
    with CheckpointWriter(background=True) as writer:
        resume, best = folder / "resume.pt", folder / "best.pt"

        def copy_resume():
            writer.save(resume, {"model": model.state_dict(), "optimizer": opt.state_dict()})

        def copy_best():
            writer.save(best, {"state_dict": model.state_dict()}, slot="best")

        # untimed: the previous write finishing (in a state it overlaps an epoch of training)
        ctx.save("state|resume_copy_seconds", timed(copy_resume, setup=lambda: writer.wait_for(resume)))
        ctx.save("state|best_copy_seconds", timed(copy_best, setup=lambda: writer.wait_for(best)))
    for f in folder.glob("*.pt"):
        f.unlink()
    ctx.check("state share: training rate")
    amp = bool(cfg["amp"]) and ctx.device.type == "cuda"
    x = torch.randn(ctx.batch, 3, *[data.img_size] * 2, device=ctx.device)
    y = torch.randint(0, 10, (ctx.batch,), device=ctx.device)
    model.train()

    def step():
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    steps = 3 if ctx.smoke else 20
    ctx.save("state|train_img_s", steps * ctx.batch / timed(lambda: [step() for _ in range(steps)], reps=1))
    ctx.save("state|epochs", schema_defaults("train")["epochs"])


def state_share_lines(sections: dict, on_gpu: bool) -> list[str]:
    """The report's lines of :func:`state_share`: the per-epoch eval + checkpoint share, PASS below 5 %."""
    r = sections.get("overheads", {}).get("results", {})
    keys = ("val_seconds", "test_seconds", "resume_copy_seconds", "best_copy_seconds", "train_img_s", "epochs")
    if any(f"state|{k}" not in r for k in keys):
        return ["| eval + checkpoint share of a state's epoch (issue 24) | not measured | < 5 % | - |"]
    val, test, resume, best, rate, epochs = (r[f"state|{k}"] for k in keys)
    epoch = CIFAR_TRAIN / rate
    copies = resume + best
    lines = [
        f"| state share inputs: val {_fmt(val, 3)} s, test {_fmt(test, 3)} s, resume.pt copy {_fmt(resume, 3)} s, "
        f"best copy {_fmt(best, 3)} s, CIFAR epoch {_fmt(epoch, 1)} s ({_fmt(rate)} img/s eager), "
        f"{epochs} epochs/state | - | - | - |"
    ]
    for what, secs in (
        ("eval_test: every (before)", val + test + copies),
        ("eval_test: best_and_final (default)", val + copies + 2 * test / epochs),
    ):
        share = 100.0 * secs / epoch
        ok = share < OVERHEAD_GOAL
        lines.append(
            f"| eval + checkpoint, % of a state's epoch, {what} | {_fmt(share, 2)} | < {OVERHEAD_GOAL:g} % | "
            f"{verdict(ok, on_gpu) if 'default' in what else '-'} |"
        )
    return lines


# --- compact --------------------------------------------------------------------------------------


def pruned(ctx: Ctx, name: str, round_to: int, sparsity: float = 0.7):
    import torch

    from prunebench.export.compact import compact_model
    from prunebench.models import build_model
    from prunebench.pruning.budget import choose_masks
    from prunebench.pruning.groups import full_masks, groupsets_of

    torch.manual_seed(0)
    spec = ctx.spec(name)
    model = build_model(spec).eval()
    groupsets = groupsets_of(model, ["heads", "neurons"])
    cfg = {"states": 2, "target_sparsity": sparsity, "schedule": "geometric", "importance": "l1",
           "ranking": "global", "round_to": round_to}  # fmt: skip
    _, keep = choose_masks(model, groupsets, full_masks(groupsets), cfg, state=1)
    compact, cspec = compact_model(model, spec, keep)
    return spec, model, compact, cspec


def section_compact(ctx: Ctx) -> None:
    batches = [1, 4] if ctx.smoke else [1, 32, 128]
    for name in list(MODELS)[: 1 if ctx.smoke else 2]:
        for round_to in (8, 1):
            ctx.check(f"compact {name} round_to {round_to}")
            try:
                ctx.save(f"{name}|round_to {round_to}", compact_item(ctx, name, round_to, batches))
            except SectionTimeout:
                raise
            except Exception as exc:  # noqa: BLE001 (one item failed: reported, the next is tried)
                ctx.save(f"{name}|round_to {round_to}|error", f"{type(exc).__name__}: {str(exc)[:300]}")


def compact_item(ctx: Ctx, name: str, round_to: int, batches: list[int]) -> dict:
    from prunebench.export.throughput import measure_throughput
    from prunebench.models.cost import input_shape, model_cost

    spec, dense, compact, cspec = pruned(ctx, name, round_to)
    ratio = model_cost(dense, spec)["macs"] / model_cost(compact, cspec)["macs"]
    tp = measure_throughput(
        {"dense": dense, "compact": compact}, input_shape(dense, spec), batches, device=ctx.device,
        warmup=1 if ctx.smoke else 3, repeats=2 if ctx.smoke else 10, amp=True,
        compile=True if ctx.smoke else "auto",  # auto: a failed compile is reported, eager stands
        compiler=(lambda m, dev: ctx.compile(m)) if ctx.smoke else None,  # --smoke: aot_eager
        **({"round_seconds": 0.01, "min_rounds": 2} if ctx.smoke else {}),
    )  # fmt: skip
    row = {"macs_ratio": ratio, "eager": {}, "compiled": {}}
    for mode, timed in (("eager", tp), ("compiled", tp.get("compiled") or {})):
        if timed.get("error"):
            row[mode] = {"error": timed["error"]}
        for b in batches:
            if str(b) in timed.get("dense", {}):
                d, c = timed["dense"][str(b)], timed["compact"][str(b)]
                row[mode][str(b)] = {"dense": d, "compact": c, "speedup": c / d, "of_macs": c / d / ratio}
    return row


# --- kernel launches per step ---------------------------------------------------------------------


def launch_check(args) -> dict:
    """Kernel launches per training step outside the compiled model (``bench/bench_launches.py``):
    dense, Refill and RSST on ViT-S/4@32 (smoke run: a thin 4-block ViT), counted by prunebench's
    launch model (``prunebench.accel.launches``) on this run's device; PASS when Refill and RSST are
    within 10 launches of dense. On CUDA the masks-and-penalty tail of an RSST step is also run under
    the profiler, so that the model's count stands beside the kernels CUDA really launched. Printed
    and written to ``launches.json``; a failure is reported, never raised."""
    import torch

    from prunebench.accel.launches import LaunchCounter

    sys.path.insert(0, str(HERE))
    import bench_launches

    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        model, steps = ("tiny_vit", 1) if args.smoke else ("vit_small", 2)
        out = bench_launches.count_launches(model, steps=steps, device=str(device))
        for v, excess in out["excess_over_dense"].items():
            ok = excess <= 10
            print(
                f"  launches/step outside the compiled model, {v} - dense: {excess:+g} (<= 10: {'PASS' if ok else 'FAIL'})"
            )
        if device.type == "cuda":
            run = bench_launches.Variant("rsst", bench_launches.MODELS["vit_small"], device)
            for prm in run.model.parameters():
                prm.grad = torch.randn_like(prm)

            def tail():
                run.hard.mask_grads()
                run.penalty.apply(1)
                run.hard.mask_weights()

            tail()  # the weight-sized masks are made once
            torch.cuda.synchronize()
            with LaunchCounter() as counter:
                tail()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                tail()
                torch.cuda.synchronize()
            kernels = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
            out["rsst_tail"] = {"model": counter.total, "profiled_kernels": kernels}
            print(f"  RSST mask/penalty tail: model {counter.total} launches, profiler {kernels} kernels")
    except Exception as exc:  # noqa: BLE001 (reported; the other figures stand)
        out = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        print(f"  launch count failed: {out['error']}")
    write_json(Path(args.out) / "launches.json", out)
    return out


# --- running and reporting ------------------------------------------------------------------------

RUNNERS = {
    "train": section_train,
    "overheads": section_overheads,
    "compile": section_compile,
    "compact": section_compact,
}


def run_section(args, section: str, limit: float) -> dict:
    """Run one section here; any failure is caught and returned with what was measured before it."""
    ctx = None
    start = time.perf_counter()
    try:
        ctx = Ctx(args, section, limit)
        RUNNERS[section](ctx)
        status = {"status": "ok"}
    except SectionTimeout as exc:
        status = {"status": "time limit", "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 (reported; the other sections go on)
        status = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    out = {**status, "seconds": time.perf_counter() - start, "results": ctx.results if ctx else {}}
    write_json(Path(args.out) / f"section_{section}.json", out)
    return out


def run_isolated(args, section: str, limit: float) -> dict:
    """The section in a process of its own, killed ``limit`` + 30 s in (a hang, a poisoned CUDA context)."""
    path = Path(args.out) / f"section_{section}.json"
    path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--section", section, "--limit", str(limit),
           "--out", str(args.out), "--device", args.device] + (["--smoke"] if args.smoke else [])  # fmt: skip
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, timeout=limit + 30, capture_output=True, text=True)
        tail = (proc.stdout + proc.stderr)[-2000:]
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc, tail = None, "killed: the section did not stop at its time limit"
    try:
        out = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        out = {"results": {}}
    if out.get("status") in (None, "running"):
        out["status"] = "killed" if rc is None else f"failed (exit {rc})"
        out["error"] = tail
    out.setdefault("seconds", time.perf_counter() - start)
    return out


def environment(args) -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "host": platform.node(),
           "cpus": os.cpu_count(), "smoke": args.smoke}  # fmt: skip
    try:
        import timm

        env["timm"] = timm.__version__
    except ImportError as exc:
        env["timm"] = f"missing ({exc})"
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    else:
        env["gpu"] = None
    return env


def _fmt(x, digits=0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def verdict(ok: bool | None, on_gpu: bool) -> str:
    """PASS/FAIL of a speed goal, which only a GPU's figures can decide (``n/a`` elsewhere)."""
    if ok is None:
        return "-"
    if not on_gpu:
        return "n/a (not a GPU)"
    return "PASS" if ok else "FAIL"


def check(ok: bool | None) -> str:
    """PASS/FAIL of a goal that holds on any device (graph counts, not speeds)."""
    return "-" if ok is None else ("PASS" if ok else "FAIL")


# --- the goals: one function each, (the results of every section, on a GPU?) -> rows of the table ----


def goal_train_throughput(sections: dict, on_gpu: bool) -> list[str]:
    """Training images/s of each model and variant against issue 13's goal; slim vs masked; compiles."""
    tr = sections.get("train", {}).get("results", {})
    lines = []
    for name, (goal, aim) in TRAIN_GOALS.items():
        for mode in ("eager", "compiled", "graphs"):
            if mode == "graphs" and not any(k.startswith(f"{name}|graphs|") for k in tr):
                continue
            for v in ("dense", "refill", "rsst", "slim"):
                r = tr.get(f"{name}|{mode}|{v}")
                ips = r["img_s"] if r else None
                lines.append(
                    f"| train img/s, {name}, {v}, {mode} | {_fmt(ips)} | >= {goal:,} (aim {aim:,}) | "
                    f"{verdict(None if ips is None else ips >= goal, on_gpu)} |"
                )
            if tr.get(f"{name}|{mode}|error"):
                lines.append(f"| train {name}, {mode} | failed: {tr[f'{name}|{mode}|error'][:150]} | - | - |")
            sp = tr.get(f"{name}|{mode}|slim_speedup")
            if sp is not None:
                lines.append(
                    f"| slim training vs masked (Refill, ~50 % of groups), {name}, {mode} | {_fmt(sp, 2)}x | - | - |"
                )
    return lines


def goal_static_shapes(sections: dict, on_gpu: bool) -> list[str]:
    """A compiled state, in a state's order, compiles one evaluation and one training graph, with no
    graph break, and nothing more through the timed epochs (masks on and off) and a second evaluation."""
    tr = sections.get("train", {}).get("results", {})
    lines = []
    for name in MODELS:
        for mode in ("compiled", "graphs"):
            key = f"{name}|{mode}"
            if f"{key}|graphs" not in tr:
                continue
            graphs, breaks, again = tr[f"{key}|graphs"], tr[f"{key}|graph_breaks"], tr.get(f"{key}|recompiles")
            lines.append(
                f"| graphs / graph breaks / recompiles after, {name}, {mode} (eval, then train) | "
                f"{graphs} / {breaks} / {_fmt(again)} | {STATE_GRAPHS} / 0 / 0 | "
                f"{check(graphs == STATE_GRAPHS and breaks == 0 and again in (0, None))} |"
            )
            lines.append(
                f"| first evaluation / first epoch / Dynamo compile, s, {name}, {mode} | "
                f"{_fmt(tr[f'{key}|first_eval_seconds'], 1)} / {_fmt(tr[f'{key}|first_epoch_seconds'], 1)} / "
                f"{_fmt(tr[f'{key}|compile_seconds'], 1)} | - | - |"
            )
    return lines


def goal_rsst_overhead(sections: dict, on_gpu: bool) -> list[str]:
    """Masks + RSST's penalty as a share of a dense step, timed alone and step against step."""
    tr = sections.get("train", {}).get("results", {})
    lines = []
    for name in MODELS:
        for mode in ("eager", "compiled", "graphs"):
            if mode == "graphs" and not any(k.startswith(f"{name}|graphs|") for k in tr):
                continue
            for key, what in (("rsst_ops_percent", "timed alone"), ("rsst_step_percent", "RSST step vs dense step")):
                p = tr.get(f"{name}|{mode}|{key}")
                lines.append(
                    f"| masks + RSST, % of a dense step ({what}), {name}, {mode} | {_fmt(p, 2)} | "
                    f"< {OVERHEAD_GOAL:g} % | {verdict(None if p is None else p < OVERHEAD_GOAL, on_gpu)} |"
                )
    return lines


def goal_epoch_overheads(sections: dict, on_gpu: bool) -> list[str]:
    """An evaluation and a checkpoint against one epoch of CIFAR training at the measured rate."""
    tr = sections.get("train", {}).get("results", {})
    ov = sections.get("overheads", {}).get("results", {})
    name = "ViT-S/4@32"
    lines = []
    for mode in ("eager", "compiled"):
        train = (tr.get(f"{name}|{mode}|dense") or {}).get("img_s")
        ev = ov.get(f"eval|{mode}|seconds")
        ck = ov.get("checkpoint|resume|background_blocked_seconds", ov.get("checkpoint|resume|seconds"))
        if ov.get(f"eval|{mode}|error"):
            lines.append(f"| evaluation, {mode} | failed: {ov[f'eval|{mode}|error'][:150]} | - | - |")
        epoch = CIFAR_TRAIN / train if train else None
        lines.append(f"| one epoch of CIFAR training (45k images), {name}, {mode}, s | {_fmt(epoch, 2)} | - | - |")
        lines.append(
            f"| evaluation val+test ({_fmt(ov.get('eval_images'))} images), {mode}, s | {_fmt(ev, 3)} | - | - |"
        )
        if epoch and ev is not None and ck is not None:
            parts = (("evaluation", ev), ("checkpoint (resume.pt; training blocked, background write)", ck))
            for what, secs in (*parts, ("both", ev + ck)):
                share = 100.0 * secs / epoch
                lines.append(
                    f"| {what}, % of an epoch, {mode} | {_fmt(share, 1)} | < {OVERHEAD_GOAL:g} % | "
                    f"{verdict(share < OVERHEAD_GOAL, on_gpu) if what == 'both' else '-'} |"
                )
    for what in ("resume", "best"):
        s, mb = ov.get(f"checkpoint|{what}|seconds"), ov.get(f"checkpoint|{what}|mb")
        if s is not None:
            lines.append(f"| checkpoint write, {what} ({_fmt(mb, 0)} MB), inline, s | {_fmt(s, 3)} | - | - |")
    blocked = ov.get("checkpoint|resume|background_blocked_seconds")
    if blocked is not None:
        lines.append(f"| checkpoint, resume, background: training blocked, s | {_fmt(blocked, 3)} | - | - |")
    lines += state_share_lines(sections, on_gpu)
    return lines


def goal_warm_compile(sections: dict, on_gpu: bool) -> list[str]:
    """A state's compile cold and warm (a shared compile cache); warm: at most
    :data:`WARM_COMPILE_SHARE` of a 60-epoch ViT-S/4@32 state's training at the measured rate."""
    co = sections.get("compile", {}).get("results", {})
    tr = sections.get("train", {}).get("results", {})
    name = "ViT-S/4@32"
    lines = []
    for run in ("cold", "warm"):
        r = co.get(f"compile|{run}")
        if not r:
            continue
        cache = r["cache"]
        hits = cache["fx_graph_hits"] + cache["aot_autograd_hits"]
        misses = cache["fx_graph_misses"] + cache["aot_autograd_misses"]
        lines.append(
            f"| compile, {run} cache, {name} ({r['mode']}): Dynamo compile / first eval / first epoch / process, s "
            f"| {_fmt(r['compile_seconds'], 1)} / {_fmt(r['first_eval_seconds'], 1)} / "
            f"{_fmt(r['first_epoch_seconds'], 1)} / {_fmt(r['process_seconds'], 1)} "
            f"(cache {hits} hits, {misses} misses) | - | - |"
        )
    warm = co.get("compile|warm")
    rate = next(((tr.get(f"{name}|{m}|dense") or {}).get("img_s") for m in ("graphs", "compiled")
                 if tr.get(f"{name}|{m}|dense")), None)  # fmt: skip
    if warm and rate:
        state = STATE_EPOCHS * CIFAR_TRAIN / rate
        share = warm["compile_seconds"] / state
        lines.append(
            f"| warm compile, % of a {STATE_EPOCHS}-epoch {name} state ({_fmt(state, 0)} s of training) | "
            f"{_fmt(100.0 * share, 1)} | <= {100 * WARM_COMPILE_SHARE:g} % | {verdict(share <= WARM_COMPILE_SHARE, on_gpu)} |"
        )
    return lines


def goal_compact(sections: dict, on_gpu: bool) -> list[str]:
    """Compact vs dense inference (torch.utils.benchmark) at ``prune.round_to`` 8 and 1, against the
    MACs ratio: the figures that decide whether GPU runs should set round_to 8."""
    co = sections.get("compact", {}).get("results", {})
    lines = []
    for key, row in co.items():
        if key.endswith("|error"):
            lines.append(f"| compact {key.removesuffix('|error').replace('|', ', ')} | failed: {row[:150]} | - | - |")
            continue
        name, rt = key.split("|")
        lines.append(f"| compact {name}, {rt}: MACs ratio | {_fmt(row['macs_ratio'], 2)}x | - | - |")
        for mode in ("eager", "compiled"):
            cells = row.get(mode) or {}
            if "error" in cells:
                lines.append(f"| compact {name}, {rt}, {mode} | not timed ({cells['error'][:100]}) | - | - |")
            timed = [b for b in cells if b != "error"]
            for b in timed:
                c = cells[b]
                # the goal is for batch 128 (the smoke run's largest batch stands in for it)
                goal = name == "ViT-S/4@32" and b == max(timed, key=int)
                lines.append(
                    f"| compact {name}, {rt}, {mode}, batch {b}: speedup (x MACs ratio) | "
                    f"{_fmt(c['speedup'], 2)}x ({_fmt(c['of_macs'], 2)}) | "
                    + (f">= {COMPACT_GOAL:g} x MACs ratio | {verdict(c['of_macs'] >= COMPACT_GOAL, on_gpu)} |"
                       if goal else "- | - |")
                )  # fmt: skip
    return lines


# the table's rows after the sections' status, in this order; a new goal is one more function here
GOALS = [
    goal_train_throughput,
    goal_static_shapes,
    goal_rsst_overhead,
    goal_epoch_overheads,
    goal_warm_compile,
    goal_compact,
]


def report(env: dict, sections: dict) -> str:
    on_gpu = bool(env.get("gpu")) and not env.get("smoke")
    lines = [
        "# gpu_check",
        "",
        f"{env.get('gpu') or 'CPU'}; torch {env['torch']}, timm {env.get('timm')}, python {env['python']}"
        + (" (smoke run: tiny models, figures mean nothing)" if env.get("smoke") else ""),
        "",
        "| section | status | seconds |",
        "|---|---|---:|",
    ]
    for s, out in sections.items():
        err = f" ({out.get('error', '').strip().splitlines()[-1][:150]})" if out.get("error") else ""
        lines.append(f"| {s} | {out['status']}{err} | {_fmt(out.get('seconds'), 1)} |")
    lines += ["", "| figure | value | goal | verdict |", "|---|---:|---|---|"]
    for goal in GOALS:
        lines += goal(sections, on_gpu)
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu_check", help="folder for the table and JSON")
    ap.add_argument("--smoke", action="store_true", help="tiny models on the CPU, same code paths (for CI)")
    ap.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every section's time limit")
    ap.add_argument(
        "--isolate", action=argparse.BooleanOptionalAction, default=None,
        help="each section in a process of its own (default: yes, except with --smoke)",
    )  # fmt: skip
    ap.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)  # internal: one isolated section
    ap.add_argument("--limit", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--compile-probe", help=argparse.SUPPRESS)  # internal: one compile, this cache folder
    args = ap.parse_args(argv)
    if args.compile_probe:
        return compile_probe(args)
    if args.section:
        return run_section(args, args.section, args.limit)
    if args.smoke and args.device == "auto":
        args.device = "cpu"
    isolate = (not args.smoke) if args.isolate is None else args.isolate
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment(args)
    print(f"# gpu_check on {env['gpu'] or 'CPU'} (torch {env['torch']}), out: {args.out}", flush=True)
    sections = {}
    for s in args.sections:
        limit = (SMOKE_LIMIT if args.smoke else LIMITS[s]) * args.scale
        print(f"  {s} (limit {limit:.0f} s) ...", flush=True)
        sections[s] = run_isolated(args, s, limit) if isolate else run_section(args, s, limit)
        print(f"  {s}: {sections[s]['status']} in {sections[s].get('seconds', 0):.0f} s", flush=True)
    table = report(env, sections)
    # the exit status: every section ran, and every compiled state's graphs are as they should be
    # (speed goals are findings, not errors: a FAIL there still exits 0)
    ok = all(out["status"] == "ok" for out in sections.values()) and not any(
        "| FAIL |" in row for row in goal_static_shapes(sections, True)
    )
    launches = launch_check(args)
    ok = ok and "error" not in launches  # a count that failed to run (its excess over dense is a finding)
    result = {"environment": env, "ok": ok, "sections": sections, "launches": launches}
    write_json(args.out / "gpu_check.json", result)
    (args.out / "gpu_check.md").write_text(table)
    print(table)
    return result


if __name__ == "__main__":
    sys.exit(0 if main().get("ok", True) else 1)
