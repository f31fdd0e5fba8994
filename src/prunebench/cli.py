"""The ``prunebench`` command: validate a config, run a state, export a compact model or build reports."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from pathlib import Path

from prunebench import __version__
from prunebench.errors import PrunebenchError
from prunebench.logs import configure_logging
from prunebench.results.layout import SUMMARY, has_states, prepared_dir, state_dir


def _cmd_validate(args) -> None:
    from prunebench.config import load_config_file
    from prunebench.prepare import resolve_checked

    resolved = resolve_checked(load_config_file(args.config), source=args.config, models=args.models)
    for name, exp in resolved.experiments.items():
        print(f"{name}\t{exp['prune']['states']} states\t{exp['train']['epochs']} epochs")
    print(f"{len(resolved.experiments)} experiments; config is valid", file=sys.stderr)
    if args.hours:
        from prunebench.estimates import planned_gpu_hours

        hours = planned_gpu_hours(resolved)
        print("model\ttraining states\tGPU-hours\tGPU-hours if every state trained dense-shaped")
        for key, row in sorted(hours.items()):
            print(f"{key}\t{row['states']}\t{row['as_configured']:.1f}\t{row['dense_shaped']:.1f}")
        total = {k: sum(row[k] for row in hours.values()) for k in ("states", "as_configured", "dense_shaped")}
        print(f"total\t{total['states']}\t{total['as_configured']:.1f}\t{total['dense_shaped']:.1f}")


def _cmd_prepare(args) -> None:
    from prunebench.config import load_config_file
    from prunebench.prepare import prepare

    results = _results_to_write(args, create=False)  # prepare validates the config before it writes there
    done = prepare(load_config_file(args.config), args.config, markers=prepared_dir(results))
    for marker in done:
        print(f"{marker['dataset']['name']}\t{marker['model']}\tweights: {marker['weights']['pretrained']}")
    print(f"{len(done)} dataset x model pairs ready for offline training jobs", file=sys.stderr)


def _cmd_train_state(args) -> None:
    from prunebench.config import load_config_file, resolve_config
    from prunebench.prepare import use_job_environment

    # as a workflow job: the model is built (and checked) by the job itself, nothing is downloaded
    resolved = resolve_config(load_config_file(args.config), source=args.config)
    use_job_environment(resolved.weights_dir)
    if args.experiment not in resolved.experiments:
        raise PrunebenchError(
            f"no experiment {args.experiment!r} in {args.config}; run `prunebench validate` to list them"
        )
    states = resolved.experiments[args.experiment]["prune"]["states"]
    if not 0 <= args.state < states:  # said before any data or model is loaded
        raise PrunebenchError(
            f"state {args.state} does not exist: {args.experiment} has {states} states, 0 to {states - 1} "
            f"(prune.states in {args.config})"
        )
    from prunebench.train.job import run_job  # after the job environment: it loads torch and timm

    args.results = _results_to_write(args)
    if run_job(resolved, args.experiment, args.state, args.results, threads=args.threads) is None:
        print(
            f"{args.experiment} state {args.state} is finished ({Path(state_dir(args.results, args.experiment, args.state))}); "
            f"nothing to do. To train it again: prunebench retrain --config {args.config} {args.experiment} "
            f"--from-state {args.state}",
            file=sys.stderr,
        )


def _cmd_retrain(args) -> None:
    from prunebench.train.recovery import set_aside

    resolved = _resolve(args.config)
    results = Path(_results_to_read(args))
    plan: dict[str, int] = {}  # run -> the first state to train again (every later one follows)
    for name in args.experiments:
        if name in resolved.state0_runs:  # a shared dense state 0: every experiment copying it follows
            plan[name] = 0
            plan.update({exp: 0 for exp, run in resolved.state0_of.items() if run == name})
            continue
        if name not in resolved.experiments:
            raise PrunebenchError(
                f"no experiment {name!r} in {args.config}; `prunebench validate --config {args.config}` lists them (a "
                "shared dense state 0 is named as its folder under results/, e.g. shared/GROUP-DATASET-MODEL-sSEED)"
            )
        n = resolved.experiments[name]["prune"]["states"]
        if not 0 <= args.from_state < n:
            raise PrunebenchError(f"{name} has no state {args.from_state}: its states are 0 to {n - 1}")
        plan[name] = min(plan.get(name, n), args.from_state)
        if args.from_state == 0 and resolved.state0_of[name] != name:
            print(
                f"{name}: its state 0 is a copy of the shared dense state 0 {resolved.state0_of[name]}, which is "
                f"kept; to train that again too (for every method of the group): prunebench retrain --config "
                f"{args.config} {resolved.state0_of[name]}",
                file=sys.stderr,
            )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for name, first in plan.items():
        n = resolved.experiments[name]["prune"]["states"] if name in resolved.experiments else 1
        moved += set_aside(results / name, list(range(first, n)), stamp)
    for src, dst in moved:
        print(f"set aside {src} -> {dst}")
    if moved:
        print("the next snakemake run trains these states again", file=sys.stderr)
    else:
        print("nothing to set aside: none of these states has been trained", file=sys.stderr)


def _positive_int(text: str) -> int:
    """A whole number >= 1 (--threads, --batch-sizes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give one >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 1")
    return value


def _state_index(text: str) -> int:
    """A prune state: 0 (dense) or more (its upper bound is the config's prune.states - 1)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a state number; give 0 (dense) to prune.states - 1"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: states are numbered from 0 (dense) to prune.states - 1")
    return value


def _device(text: str) -> str:
    """A torch device for timing: cpu, cuda or cuda:N."""
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", text):
        raise argparse.ArgumentTypeError(f"{text!r}: use cpu, cuda or cuda:N (e.g. cuda:1)")
    return text


def _path_arg(text: str) -> str:
    """A file or folder named on the command line (whether it must exist, the command checks)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a file or folder name")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r}: a path cannot hold a NUL character")
    return text


def _compile_choice(text: str):
    """``--compile``'s value: auto, true or false (what ``measure.compile`` takes)."""
    choices = {"auto": "auto", "true": True, "false": False}
    if text.lower() not in choices:
        raise argparse.ArgumentTypeError(f"{text!r}: use auto, true or false")
    return choices[text.lower()]


def _cmd_export(args) -> None:
    from prunebench.export.run import export_checkpoint
    from prunebench.export.throughput import speedup_text

    out = Path(args.out)
    measure = summary = None
    if args.throughput:
        measure = {"batch_sizes": args.batch_sizes, "warmup": 3, "repeats": 10, "amp": True, "compile": args.compile}
    elif (Path(args.checkpoint).parent / SUMMARY).is_file():
        summary = Path(args.checkpoint).parent / SUMMARY  # the throughput timed when the state ended
    info = export_checkpoint(
        args.checkpoint, out, out.with_suffix(".json"), summary=summary, measure=measure, device=args.device
    )
    d, c = info["cost"]["dense"], info["cost"]["compact"]
    print(f"{out}\t{c['params']:,} of {d['params']:,} params\t{c['macs'] / 1e6:.1f} of {d['macs'] / 1e6:.1f} MMACs")
    if info["throughput"]:
        tput = info["throughput"]
        for mode, timed in (("eager", tput), ("compiled", tput.get("compiled") or {})):
            for b in timed.get("dense", {}):
                dense, compact = timed["dense"][b], timed["compact"][b]
                spread = timed.get("speedup", {}).get(b)
                ratio = speedup_text(spread) if spread else f"{compact / dense:.2f}x"
                print(f"{mode}, batch {b}: {dense:.0f} -> {compact:.0f} images/s, {ratio}")
            if timed.get("error"):
                print(f"{mode}: not timed ({timed['error']})")


def _results_dir(args) -> str:
    """--results, else the results folder of --config (its output_dir, relative to the current folder
    as Snakemake takes it), else results/."""
    if args.results:
        return args.results
    if args.config:
        from prunebench.config import load_config_file, output_paths

        return output_paths(load_config_file(args.config)).results
    return "results"


def _whence(args) -> str:
    if args.results:
        return "--results"
    if args.config:
        return f"the output_dir of {args.config}, relative to the current folder {Path.cwd()}, as snakemake takes it"
    return "the default; give --results or --config"


def _project_dir(config: str) -> Path | None:
    """The folder snakemake runs in for ``config``: the nearest folder above it holding the Snakefile."""
    for folder in Path(config).absolute().parents:
        if (folder / "Snakefile").is_file() or (folder / "workflow" / "Snakefile").is_file():
            return folder
    return None


def _results_to_read(args) -> str:
    """The results folder that report and status read: it must exist and hold states (nothing is created
    there for a mistyped name). A config's relative output_dir is looked for in the current folder, as
    snakemake run from here would write it, then in the config's project folder (the one holding the
    Snakefile above it, where snakemake usually runs), so that `--config /path/to/project/config.yaml`
    works from anywhere."""
    folder = _results_dir(args)
    path, also = Path(folder), ""
    project = _project_dir(args.config) if args.config and not args.results else None
    if project is not None and not path.is_absolute() and project.resolve() != Path.cwd().resolve():
        there = project / folder
        if not path.exists() and there.exists():
            print(
                f"prunebench: reading {there} (the output_dir of {args.config}, in its project folder)", file=sys.stderr
            )
            return str(there)
        also = f", nor in the config's project folder ({there}, where snakemake runs next to its Snakefile)"
    if not path.exists():
        raise PrunebenchError(
            f"results folder {folder} ({_whence(args)}) does not exist{also}; run prunebench where you run "
            "snakemake, or give the folder the workflow writes with --results"
        )
    if not path.is_dir():
        raise PrunebenchError(
            f"results folder {folder} ({_whence(args)}) is not a folder; give the folder the workflow writes"
        )
    if not has_states(path):
        raise PrunebenchError(
            f"results folder {folder} ({_whence(args)}) holds no prune states yet (no {{experiment}}/state{{k}} "
            "folder): run the workflow first, or give the folder that holds them"
        )
    return folder


def _results_to_write(args, create: bool = True) -> str:
    """The results folder that train-state and prepare write, created now (``create``; else only its
    nearest existing folder is checked): a folder that cannot be created (a file in its way, a read-only
    or special filesystem, no permission) is one clear error."""
    folder = _results_dir(args)
    path = Path(folder)
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(13, f"{existing} is not writable for this user")
    except OSError as exc:
        existing = next((p for p in (path.absolute(), *path.absolute().parents) if p.exists()), None)
        why = f"{existing} is a file, not a folder" if existing and not existing.is_dir() else exc.strerror or exc
        raise PrunebenchError(
            f"results folder {folder} ({_whence(args)}) cannot be created or written ({why}); give a folder you "
            "can write"
        ) from None
    return folder


def _resolve(config: str):
    """The config file validated and resolved."""
    from prunebench.config import load_config_file, resolve_config

    return resolve_config(load_config_file(config), source=config)


def _plan(config: str | None, resolved=None):
    """The planned experiments of a config (None: judge from the results found); ``resolved``: the
    config already resolved."""
    if config is None:
        return None
    from prunebench.config import training_hash
    from prunebench.report.load import plan_from_experiments

    resolved = resolved or _resolve(config)
    plan = plan_from_experiments(resolved.experiments)
    plan["state0_run"] = plan["experiment"].map(resolved.state0_of)  # where a shared state 0 is running
    plan["state0_shared"] = plan["state0_run"] != plan["experiment"]  # its time is the shared run's
    # what each experiment's states must have been trained under to be current (report.status)
    plan["config_hash"] = plan["experiment"].map(lambda name: training_hash(resolved.experiments[name]))
    return plan


def _cmd_report(args) -> None:
    from prunebench.report.build import build_reports
    from prunebench.report.status import stale_states

    resolved = _resolve(args.config) if args.config else None
    plan = _plan(args.config, resolved)
    args.results = _results_to_read(args)
    written, missing = build_reports(args.results, plan, resolved.experiments if resolved else None)
    for path in written:
        print(path)
    stale = stale_states(args.results, plan)
    if stale:
        print("stale states (their numbers in the reports are of the old settings):", file=sys.stderr)
        for line in stale:
            print(f"  {line}", file=sys.stderr)
    if missing:
        print("missing states (the reports are partial):", file=sys.stderr)
        for line in missing:
            print(f"  {line}", file=sys.stderr)
    elif args.config is None:
        print("no --config given: states after the last one found cannot be known to be missing", file=sys.stderr)


def _cmd_status(args) -> None:
    from prunebench.report.status import format_progress, progress, shared_progress, stale_states

    resolved = _resolve(args.config)
    plan = _plan(args.config, resolved)
    args.results = _results_to_read(args)
    shared = shared_progress(args.results, resolved.state0_runs)
    print(format_progress(progress(args.results, plan, shared), shared))
    for line in stale_states(args.results, plan):
        print(f"  stale: {line}")


DEFAULT_CONFIG = "config.yaml"


def _config_args(p, *, positional: bool = False, default: str | None = DEFAULT_CONFIG, help: str = "") -> None:
    """``--config FILE``, the one spelling of every command; ``positional``: CONFIG before the other
    arguments is accepted too, as these commands took it before."""
    where = f"default: {default}" if default else "optional"
    p.add_argument(
        "--config", type=_path_arg, default=None, metavar="FILE",
        help=f"the workflow's config file ({help or where})",
    )  # fmt: skip
    p.set_defaults(config_default=default)
    if positional:
        p.add_argument("config_file", nargs="?", type=_path_arg, metavar="CONFIG", help="the same as --config FILE")


def _one_config(parser, args) -> None:
    """``args.config`` from --config or the positional CONFIG (both: they must agree), else the default."""
    if not hasattr(args, "config_default"):  # a command without a config (export)
        return
    given = getattr(args, "config_file", None)
    if given is not None and args.config is not None and given != args.config:
        parser.error(f"two configs given: {given} and --config {args.config}; give one")
    args.config = args.config or given or args.config_default


class _Parser(argparse.ArgumentParser):
    """argparse, with a wrong argument told in one line (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="prunebench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="validate a config and list its experiments")
    _config_args(p, positional=True)
    p.add_argument(
        "--models",
        action="store_true",
        help="also build every model on the meta device: timm names, kwargs, image and patch sizes, the groups "
        "prune.groups and round_to find (imports torch and timm: seconds; `prunebench prepare` checks this too)",
    )
    p.add_argument(
        "--hours",
        action="store_true",
        help="also print the estimated GPU-hours of its training states per model (prunebench.estimates: before "
        "the jobs' safety factor; pruned states trained slim take less)",
    )
    p.set_defaults(func=_cmd_validate)
    p = sub.add_parser(
        "prepare",
        help="check the models and download the datasets and pretrained weights of a config, for offline "
        "training jobs (the workflow does it first; with download: false, only check they are present)",
    )
    _config_args(p, positional=True)
    p.add_argument(
        "--results",
        type=_path_arg,
        help="results folder, whose .prepared/ marks what is ready (default: the config's output_dir/results)",
    )
    p.set_defaults(func=_cmd_prepare)
    p = sub.add_parser("train-state", help="train one prune state (what a workflow job does)")
    _config_args(p, positional=True)
    p.add_argument("experiment", help="experiment name, as `prunebench validate --config CONFIG` lists them")
    p.add_argument("state", type=_state_index, help="prune state to train: 0 (dense) to prune.states - 1")
    p.add_argument("--results", type=_path_arg, help="results folder (default: the config's output_dir/results)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=_cmd_train_state)
    p = sub.add_parser(
        "retrain",
        help="train an experiment again on purpose from a chosen state on: set those states aside (under "
        "RESULTS/EXPERIMENT/retrained/, nothing is deleted) so that the next snakemake run trains them",
    )
    p.add_argument("experiments", nargs="+", metavar="experiment", help="experiment (or shared state-0 run) names")
    p.add_argument(
        "--from-state", type=_state_index, default=0, metavar="K",
        help="the first state to train again; every later state follows from it (default: 0, the whole chain)",
    )  # fmt: skip
    _config_args(p)
    p.add_argument("--results", help="results folder (default: the config's output_dir/results)")
    p.set_defaults(func=_cmd_retrain)
    p = sub.add_parser(
        "export", help="write the compact (physically pruned) model of a state checkpoint, with its costs"
    )
    p.add_argument("checkpoint", type=_path_arg, help="a state's last.pt or best.pt")
    p.add_argument("out", type=_path_arg, help="compact model file to write (its costs go to the same name with .json)")
    p.add_argument("--throughput", action="store_true", help="time dense and compact models here")
    p.add_argument("--batch-sizes", type=_positive_int, nargs="+", default=[1, 32, 128], help="batch sizes to time")
    p.add_argument("--device", type=_device, default="cpu", help="device to time on (cpu, cuda, cuda:1)")
    p.add_argument(
        "--compile", type=_compile_choice, default="auto",
        help="also time compiled inference: auto (on CUDA only), true or false (default: auto)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_export)
    p = sub.add_parser("report", help="build the reports under RESULTS/reports from the states done so far")
    _config_args(p, default=None, help="to know which states are planned and missing (default: none)")
    p.add_argument("--results", type=_path_arg, help="results folder (default: the config's output_dir/results)")
    p.set_defaults(func=_cmd_report)
    p = sub.add_parser("status", help="progress of the experiments of a config: states done, running, ETA")
    _config_args(p)
    p.add_argument("--results", type=_path_arg, help="results folder (default: the config's output_dir/results)")
    p.set_defaults(func=_cmd_status)
    args = parser.parse_args(argv)
    _one_config(parser, args)
    configure_logging()
    try:
        args.func(args)
        sys.stdout.flush()  # here, not at exit: a reader that went away (`| head`) is then handled below
    except BrokenPipeError:
        # `prunebench status | head -2`: the reader closed the pipe. As Python's docs on SIGPIPE advise,
        # what is left of the output goes to devnull (so the flush at exit fails no more) and the exit
        # status is the shell's for a command ended by SIGPIPE, without a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except PrunebenchError as exc:
        print(f"prunebench: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the command reads or writes: named by the OS error, in one line
        print(f"prunebench: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
