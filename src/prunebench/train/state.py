"""Run one prune state: load the previous state, plan the pruning, train, write the state's files.

Declared outputs (``last.pt``, ``best.pt``, ``metrics.jsonl``, ``summary.json``, and ``init.pt``
for state 0) are written only when the state has finished, each atomically. While it runs, the
state keeps its progress in a recovery folder outside the declared outputs: the metrics so far, the
best checkpoint so far and a resume checkpoint written after every epoch, from which a rerun of a
killed state continues. The same folder holds the lock that keeps a second trainer out and the
sealed copy of the finished outputs that a rerun adopts instead of training (prunebench.train.recovery).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from prunebench.config import finetune_epochs, state_epochs
from prunebench.data import DeviceData, load_dataset
from prunebench.errors import CheckpointError, TrainingError
from prunebench.export.measure import state_measures
from prunebench.io import atomic_torch_save
from prunebench.models import build_model, model_spec
from prunebench.provenance import versions
from prunebench.pruning.groups import (
    MaskedParams,
    alive_params,
    full_masks,
    groupsets_of,
    kept_counts,
    param_masks,
)
from prunebench.pruning.methods import RSSTPenalty, StatePlan, alive_fraction, plan_state
from prunebench.pruning.reprune import REPruneRun
from prunebench.train.checkpoint import load_trained, make_checkpoint, save_checkpoint
from prunebench.train.devices import acquire_device
from prunebench.train.loop import (
    configure_device,
    evaluate,
    make_optimizer,
    masked_view,
    prepare_model,
    train_one_epoch,
    uses_channels_last,
)
from prunebench.train.metrics import append_row, experiment_ids, make_row, read_rows, write_rows
from prunebench.train.recovery import adopt_finished, drop_progress, finish_state, lock_state, release_finished
from prunebench.train.seeding import seed_everything, state_seed

log = logging.getLogger("prunebench")

RESUME_VERSION = 2  # 2: best checkpoints named by epoch


@dataclass
class StatePaths:
    """Where one state's files go."""

    out_dir: Path
    recovery_dir: Path
    previous: Path | None = None  # the previous state's last.pt (states >= 1)
    init: Path | None = None  # state 0's init.pt (rewind: init)

    def __post_init__(self):
        self.out_dir, self.recovery_dir = Path(self.out_dir), Path(self.recovery_dir)

    @classmethod
    def under(cls, results: str | Path, experiment: str, state: int) -> StatePaths:
        """The layout of a results folder (the workflow's rules/common.smk spells out the same paths)."""
        base = Path(results) / experiment
        return cls(
            base / f"state{state}",
            base / "recovery" / f"state{state}",
            base / f"state{state - 1}" / "last.pt" if state else None,
            base / "state0" / "init.pt",
        )

    @property
    def progress_metrics(self) -> Path:
        return self.recovery_dir / "metrics.jsonl"

    def best_at(self, epoch: int) -> Path:
        """The best checkpoint so far, named by its epoch: ``resume.pt`` says which one is current, so
        a kill between writing a new best and the next ``resume.pt`` cannot leave the two disagreeing."""
        return self.recovery_dir / f"best-epoch{epoch}.pt"

    def drop_best_except(self, epoch: int) -> None:
        for path in self.recovery_dir.glob("best-epoch*.pt"):
            if path != self.best_at(epoch):
                path.unlink(missing_ok=True)

    @property
    def resume(self) -> Path:
        return self.recovery_dir / "resume.pt"


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class _Progress:
    epoch: int = 0
    step: int = 0
    best_val: float = -1.0
    best_epoch: int = -1
    train_seconds: float = 0.0
    wall_seconds: float = 0.0  # of the processes before a resume, up to their last resume.pt
    rows: list = field(default_factory=list)


def _load_previous(paths: StatePaths, experiment: dict, state: int, spec: dict):
    """State k-1's last checkpoint, refused unless it is of this experiment, method and model, trained
    under the settings the experiment has now."""
    return load_trained(paths.previous, experiment, state - 1, spec)


def _load_into(model, state_dict, path) -> None:
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the model ({exc}); delete it and rerun") from None


def _previous_stamp(paths: StatePaths) -> list[int] | None:
    """Size and mtime of the previous state's checkpoint: a rebuilt predecessor makes a resume stale."""
    if paths.previous is None:
        return None
    st = os.stat(paths.previous)
    return [st.st_size, st.st_mtime_ns]


def _try_resume(paths: StatePaths, experiment: dict, state: int):
    """The resume checkpoint of this very state, config and predecessor, or None (a stale one is set aside)."""
    if not paths.resume.exists():
        return None
    try:
        res = torch.load(paths.resume, map_location="cpu", weights_only=True)
    except Exception as exc:
        why = f"is unreadable ({exc})"
    else:
        if res.get("version") != RESUME_VERSION or res.get("config") != experiment or res.get("state") != state:
            why = "is for another run or config"
        elif res.get("previous") != _previous_stamp(paths):
            why = f"continues an older {paths.previous}, which was rebuilt since"
        elif res["progress"]["best_epoch"] > 0 and not paths.best_at(res["progress"]["best_epoch"]).is_file():
            why = f"names a best checkpoint {paths.best_at(res['progress']['best_epoch'])} that is missing"
        else:
            # rows after the resume point belong to an epoch that reruns (killed before its resume.pt)
            epoch = res["progress"]["epoch"]
            rows = [r for r in read_rows(paths.progress_metrics) if r["epoch"] <= epoch]
            if [r["epoch"] for r in rows] == list(range(epoch + 1)):
                paths.drop_best_except(res["progress"]["best_epoch"])  # a best of a rerun epoch goes too
                return {**res, "rows": rows}
            why = f"has no complete metrics in {paths.progress_metrics}"
    log.warning("recovery checkpoint %s %s; starting the state afresh", paths.resume, why)
    drop_progress(paths)  # not the lock: this process holds it
    return None


def run_state(
    experiment: dict,
    state: int,
    paths: StatePaths,
    *,
    data_dir: str = "data",
    download: bool = True,
    device: str = "auto",
    threads: int | None = None,
) -> dict:
    """Train prune state ``state`` of ``experiment`` and write its files; returns the summary.

    The state's recovery folder is locked for as long as this runs (a second trainer of the state
    stops with StateBusyError). A state an earlier attempt finished is adopted, not trained again.
    """
    lock = lock_state(paths.recovery_dir, f"state {state} of {experiment['name']}")
    try:
        done = adopt_finished(paths, experiment, state)
        if paths.previous is not None:
            release_finished(Path(paths.previous).parent)  # this job started: Snakemake recorded it
        if done is not None:
            return done
        return _train_state(
            experiment, state, paths, data_dir=data_dir, download=download, device=device, threads=threads
        )
    finally:
        lock.release()


def _train_state(experiment: dict, state: int, paths: StatePaths, *, data_dir, download, device, threads) -> dict:
    if threads:
        torch.set_num_threads(threads)
    log.info(
        "experiment %s, state %d (%s), %d CPU threads",
        experiment["name"],
        state,
        experiment["method"],
        torch.get_num_threads(),
    )
    placement = [
        f"{k}={os.environ[k]}" for k in ("SLURM_JOB_ID", "SLURMD_NODENAME", "CUDA_VISIBLE_DEVICES") if k in os.environ
    ]
    if placement:
        log.info("placement: %s", " ".join(placement))
    lease = acquire_device(device)
    try:
        return _run_state(experiment, state, paths, lease.device, data_dir=data_dir, download=download, threads=threads)
    finally:
        lease.release()


def _run_state(
    experiment: dict, state: int, paths: StatePaths, dev: torch.device, *, data_dir, download, threads
) -> dict:
    wall_start = time.time()
    name, method = experiment["name"], experiment["method"]
    tcfg, pcfg = experiment["train"], experiment["prune"]

    seed = state_seed(experiment["seed"], state)
    seed_everything(seed)
    dcfg = experiment["data"]
    splits = load_dataset(
        experiment["dataset"], data_dir, download, dcfg["val_size"], dcfg["train_limit"], dcfg["split_seed"]
    )
    log.info("data %s: %s", splits.name, splits.sizes())
    spec = model_spec(experiment["model"], splits.num_classes)

    # --- the model as the previous state left it, and this state's plan ---
    if state == 0:
        model = build_model(spec, pretrained=experiment["model"]["pretrained"])
        groupsets = groupsets_of(model, pcfg["groups"])
        full = full_masks(groupsets)
        plan = StatePlan(1.0, full, full, {k: ~v for k, v in full.items()})
    else:
        prev = _load_previous(paths, experiment, state, spec)
        model = build_model(spec)
        _load_into(model, prev["state_dict"], paths.previous)
        groupsets = groupsets_of(model, pcfg["groups"])
        if set(prev["masks"]) != {gs.name for gs in groupsets}:
            raise CheckpointError(
                f"masks in {paths.previous} do not match the model's prunable groups; delete it and rerun"
            )
        plan = plan_state(method, model, groupsets, prev["masks"], pcfg, state)
        if pcfg["rewind"] == "init":
            init = load_trained(paths.init, experiment, 0)
            _load_into(model, init["state_dict"], paths.init)
    # a copy: state_dict() shares storage with the parameters, which training then changes in place
    init_state_dict = {k: v.detach().clone() for k, v in model.state_dict().items()} if state == 0 else None
    # REPrune prunes at epoch ends during the chain (see pruning/reprune.py for the mapping).
    reprune = REPruneRun(experiment, groupsets) if method == "reprune" else None

    resume = _try_resume(paths, experiment, state)
    if resume is not None:
        plan = StatePlan(
            resume["plan"]["density"], resume["plan"]["train"], resume["plan"]["final"], resume["plan"]["penalized"]
        )
        _load_into(model, resume["model"], paths.resume)
    configure_device(dev)
    net = prepare_model(model, spec["family"], dev, compile=tcfg["compile"])

    hard = MaskedParams(model, param_masks(model, groupsets, plan.train_masks))
    final = MaskedParams(model, param_masks(model, groupsets, plan.final_masks))
    hard.mask_weights()
    data = DeviceData(
        splits, dev, spec["img_size"], tcfg["augment"], tcfg["crop_padding"],
        channels_last=uses_channels_last(spec["family"], dev),
    )  # fmt: skip
    reg_epochs = state_epochs(experiment, state)  # RSST's lambda grows over these ...
    epochs = reg_epochs + finetune_epochs(experiment, state)  # ... then it fine-tunes under the hard mask
    steps_per_epoch = data.steps_per_epoch(tcfg["batch_size"])
    total_steps = epochs * steps_per_epoch
    warmup_steps = int(round(tcfg["warmup_epochs"] * steps_per_epoch))
    # One concurrent REPrune run spans the chain, so its lr schedule does too; others restart per state.
    lr_offset = reprune.offset(state) * steps_per_epoch if reprune else 0
    lr_total = reprune.total_epochs * steps_per_epoch if reprune else total_steps
    penalty = None
    if plan.has_penalty:
        penalty = RSSTPenalty.for_groups(
            model, groupsets, plan.penalized, experiment["rsst"], reg_epochs * steps_per_epoch
        )
    optimizer = make_optimizer(model, tcfg)
    generator = torch.Generator(device=dev).manual_seed(seed)

    ids = experiment_ids(experiment, state)
    params_alive = alive_params(model, param_masks(model, groupsets, plan.final_masks))
    paths.recovery_dir.mkdir(parents=True, exist_ok=True)
    prog = _Progress()
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        generator.set_state(resume["generator"].to(generator.get_state().device))
        torch.set_rng_state(resume["torch_rng"])
        prog = _Progress(**resume["progress"])
        prog.rows = resume["rows"]
        write_rows(paths.progress_metrics, prog.rows)
        wall_start -= prog.wall_seconds  # the state's wall time counts the processes before this one
        log.info("resuming state %d after epoch %d of %d from %s", state, prog.epoch, epochs, paths.resume)
    else:
        paths.progress_metrics.unlink(missing_ok=True)

    def eval_row(epoch: int, values: dict) -> dict:
        with masked_view(final if plan.has_penalty else None):
            val_loss, val_acc = evaluate(net, data, "val", tcfg["eval_batch_size"], tcfg["amp"])
            _, test_acc = evaluate(net, data, "test", tcfg["eval_batch_size"], tcfg["amp"])
            row = make_row(ids, epoch, {
                **values, "val_loss": val_loss, "val_acc": val_acc, "test_acc": test_acc,
                "density": plan.density, "params_alive": params_alive,
            })  # fmt: skip
            if epoch > 0 and val_acc > prog.best_val:
                prog.best_val, prog.best_epoch = val_acc, epoch
                save_checkpoint(paths.best_at(epoch), _ckpt(epoch, row))
        append_row(paths.progress_metrics, row)
        prog.rows.append(row)
        return row

    def _ckpt(epoch: int, metrics: dict) -> dict:
        return make_checkpoint(
            experiment=experiment, model_spec=spec, model=model, masks=plan.final_masks,
            state=state, epoch=epoch, metrics=metrics,
        )  # fmt: skip

    if prog.epoch == 0 and not prog.rows:
        row = eval_row(0, {"lr": 0.0, "reg_lambda": 0.0, "epoch_seconds": 0.0})
        log.info(
            "state %d epoch 0/%d (before training) val %.2f test %.2f", state, epochs, row["val_acc"], row["test_acc"]
        )

    first_epoch, resumed_at = prog.epoch + 1, time.time()
    for epoch in range(first_epoch, epochs + 1):
        if penalty is not None and epoch > reg_epochs:  # RSST's masked fine-tune: the hard mask from here on
            final.mask_weights()
            hard, penalty = final, None
            log.info("state %d: applied the hard mask (density %.4f); masked fine-tuning for epochs %d-%d",
                     state, plan.density, reg_epochs + 1, epochs)  # fmt: skip
        stats = train_one_epoch(
            net, data, optimizer, tcfg, step0=lr_offset + prog.step, total_steps=lr_total,
            warmup_steps=warmup_steps, generator=generator, hard=hard, penalty=penalty,
        )  # fmt: skip
        loss = stats["train_loss"]
        if math.isnan(loss) or loss > tcfg["divergence_loss"]:
            msg = (
                f"state {state} of {name} stopped at epoch {epoch}: training loss is {loss} "
                f"(limit train.divergence_loss={tcfg['divergence_loss']}); no checkpoint was written. "
                "Lower train.lr or set train.grad_clip, then rerun."
            )
            log.error(msg)
            raise TrainingError(msg)
        prog.step += stats["steps"]
        prog.train_seconds += stats["seconds"]
        ips = stats["images"] / max(stats["seconds"], 1e-9)
        extra = {}
        if reprune is not None:
            event, global_epoch = None, reprune.offset(state) + epoch
            if reprune.is_event(global_epoch):
                masks, event = reprune.prune(model, plan.final_masks, global_epoch, data.img_size)
                plan = StatePlan(alive_fraction(masks), masks, masks, plan.penalized)
                pmasks = param_masks(model, groupsets, masks)
                hard = final = MaskedParams(model, pmasks)
                hard.mask_weights()
                params_alive = alive_params(model, pmasks)
                # the state's best checkpoint is chosen among epochs with its latest architecture
                prog.best_val, prog.best_epoch = -1.0, -1
                log.info("state %d epoch %d: REPrune event, density %.4f, mean coverage %.3f",
                         state, epoch, plan.density, event["coverage"])  # fmt: skip
            extra = {
                "global_epoch": global_epoch,
                "coverage": event["coverage"] if event else None,
                "reprune_event": event,
            }
        row = eval_row(epoch, {
            "train_loss": loss, "train_acc": stats["train_acc"], "lr": stats["lr"],
            "reg_lambda": stats["reg_lambda"], "epoch_seconds": stats["seconds"], "images_per_second": ips,
            **extra,
        })  # fmt: skip
        prog.epoch = epoch
        prog.wall_seconds = time.time() - wall_start
        eta = (time.time() - resumed_at) / (epoch - first_epoch + 1) * (epochs - epoch)
        log.info(
            "state %d epoch %d/%d loss %.4f acc %.2f val %.2f test %.2f lr %.5f lambda %.3g %.0f img/s ETA %s",
            state, epoch, epochs, loss, row["train_acc"], row["val_acc"], row["test_acc"], row["lr"],
            row["reg_lambda"], ips, _fmt_eta(eta),
        )  # fmt: skip
        _save_resume(paths, experiment, state, model, optimizer, generator, plan, prog)

    # --- end of state: the hard mask of the plan becomes permanent ---
    final.mask_weights()
    last_row = prog.rows[-1]
    if penalty is not None:
        log.info("state %d: applied the hard mask (density %.4f)", state, plan.density)
    summary = _summary(experiment, state, spec, model, groupsets, plan, prog, dev, wall_start, threads)
    if reprune is not None:
        summary["reprune"] = reprune.state_summary(state, prog.rows)
    init = None
    if state == 0:
        init_model = build_model(spec)
        init_model.load_state_dict(init_state_dict)
        init = make_checkpoint(
            experiment=experiment, model_spec=spec, model=init_model, masks=plan.final_masks,
            state=0, epoch=0, metrics={},
        )  # fmt: skip
    # sealed in the recovery folder first, then linked into place: see prunebench.train.recovery
    finish_state(
        paths, experiment, state, last=_ckpt(epochs, last_row), best=paths.best_at(prog.best_epoch),
        rows=prog.rows, summary=summary, init=init,
    )  # fmt: skip
    log.info(
        "state %d done: best val %.2f (epoch %d), test at best %.2f, final test %.2f, %d/%d params alive",
        state, summary["best_val_acc"], summary["best_epoch"], summary["best_test_acc"],
        summary["final_test_acc"], summary["params_alive"], summary["params_dense"],
    )  # fmt: skip
    return summary


def _save_resume(paths, experiment, state, model, optimizer, generator, plan, prog) -> None:
    atomic_torch_save(paths.resume, {
        "version": RESUME_VERSION,
        "config": experiment,
        "state": state,
        "previous": _previous_stamp(paths),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "plan": {"density": plan.density, "train": plan.train_masks, "final": plan.final_masks, "penalized": plan.penalized},
        "progress": {k: v for k, v in vars(prog).items() if k != "rows"},
    })  # fmt: skip
    paths.drop_best_except(prog.best_epoch)  # only now is an earlier best no longer needed


def _summary(experiment, state, spec, model, groupsets, plan, prog, dev, wall_start, threads) -> dict:
    trained = [r for r in prog.rows if r["epoch"] > 0]
    best = next(r for r in trained if r["epoch"] == prog.best_epoch)
    last = trained[-1]
    return {
        **experiment_ids(experiment, state),
        "epoch": last["epoch"],
        "epochs": len(trained),
        "density": plan.density,
        "best_epoch": best["epoch"],
        "best_val_acc": best["val_acc"],
        "best_test_acc": best["test_acc"],
        "final_val_acc": last["val_acc"],
        "final_test_acc": last["test_acc"],
        "max_test_acc": max(r["test_acc"] for r in trained),
        "acc_after_pruning": prog.rows[0]["test_acc"],
        "params_dense": sum(p.numel() for p in model.parameters()),
        "params_alive": alive_params(model, param_masks(model, groupsets, plan.final_masks)),
        "kept": kept_counts(groupsets, plan.final_masks),
        "group_sizes": _sizes(groupsets),
        "model_spec": spec,
        "wall_seconds": time.time() - wall_start,
        "train_seconds": prog.train_seconds,
        "images_per_second": sum(r["images_per_second"] for r in trained) / len(trained),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "threads": threads or torch.get_num_threads(),
        "versions": versions(),
        # params/MACs of the dense and the physically slimmed model, and their measured throughput
        **state_measures(model, spec, plan.final_masks, experiment.get("measure"), dev),
    }


def _sizes(groupsets) -> dict:
    out: dict[str, dict[str, int]] = {}
    for gs in groupsets:
        out.setdefault(gs.layer, {})[gs.kind] = gs.size
    return out
