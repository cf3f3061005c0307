"""``wdist wdgrl run|bench``: one adaptation experiment from a config, or the whole benchmark.

    wdist wdgrl run --config moons50 [--seeds 5] [--device cpu] [--resume | --overwrite]
    wdist wdgrl run --config files --source src.npz --target tgt.npz
    wdist wdgrl bench [--seeds 3] [--epochs N] [--methods ...] [--out DIR] [--device cpu]
                      [--resume]

Both write to a git-ignored folder under runs/ by default; ``bench --out results/wdgrl
--overwrite`` regenerates the committed results.
"""

from __future__ import annotations

import argparse

from wdist_apps.runtime import add_device_arg
from wdist_apps.runtime.run import add_resume_args, add_run_args


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "wdgrl",
        help="Wasserstein-guided domain adaptation (WDGRL) and its baselines",
        description="Train WDGRL (Shen et al. 2018) and the baselines (source-only, DANN, Deep "
        "CORAL, target-supervised) on one task (run), or on every benchmark task (bench).",
    )
    sub = p.add_subparsers(dest="wdgrl_command", metavar="{run,bench}", required=True)

    run = sub.add_parser("run", help="one task from a config: every method x seed, a table, "
                         "curves and feature plots")
    add_run_args(run, "wdgrl", default_out="runs/wdgrl", config_default=None)
    run.add_argument("--seeds", type=int, help="number of seeds (overrides the config)")
    run.add_argument("--epochs", type=int, help="epochs per run (overrides the config)")
    run.add_argument("--methods", nargs="+", help="subset of methods (overrides the config)")
    run.add_argument("--source", help="source feature file (.npz/.csv) for task 'files'")
    run.add_argument("--target", help="target feature file (.npz/.csv) for task 'files'")
    _threads_arg(run)
    run.set_defaults(func=_run)

    bench = sub.add_parser("bench", help="every benchmark task (the built-in configs except "
                           "files): one table")
    bench.add_argument("--seeds", type=int, help="number of seeds per task")
    bench.add_argument("--epochs", type=int, help="epochs per run")
    bench.add_argument("--methods", nargs="+", help="only these rows (those a task's config "
                       "lists), written to bench_<m1>+<m2>....md, e.g. --methods "
                       "knn_source_only ot_emd ot_sinkhorn ot_linear")
    bench.add_argument("--out", default="runs/wdgrl-bench", metavar="DIR",
                       help="output folder (default: runs/wdgrl-bench; the committed table is "
                       "regenerated with --out results/wdgrl --overwrite)")
    add_resume_args(bench, resume="continue interrupted runs from their last epoch checkpoint",
                    overwrite="start afresh in an --out that holds a previous benchmark")
    add_device_arg(bench)
    _threads_arg(bench)
    bench.set_defaults(func=_bench)


def _threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (default 1: fastest for these small networks)")


def _threads(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    return args.threads


def _run(args: argparse.Namespace) -> int:
    from wdist_apps.runtime import scoped_settings, stop_on_signal
    from wdist_apps.runtime.run import config_file, config_overrides
    from wdist_apps.wdgrl.report import run_one

    if not args.config:
        raise ValueError("--config is required (a built-in name, e.g. --config moons50, or a "
                         "YAML file)")
    overrides = config_overrides(args, seeds=args.seeds, epochs=args.epochs,
                                 methods=args.methods, source_path=args.source,
                                 target_path=args.target)
    # the estimators' fits share this block's flag: a signal or the time limit stops the one
    # under way after its epoch's checkpoint
    with scoped_settings(threads=_threads(args)), stop_on_signal(time_limit_s=args.time_limit):
        run_one(config_file(args), overrides, args.out, args.device, resume=args.resume,
                overwrite=args.overwrite)
    print(f"wrote {args.out}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from wdist_apps.runtime import scoped_settings, stop_on_signal
    from wdist_apps.wdgrl.report import run_bench

    with scoped_settings(threads=_threads(args)), stop_on_signal():
        run_bench(args.out, args.device, seeds=args.seeds, epochs=args.epochs,
                  resume=args.resume, overwrite=args.overwrite, methods=args.methods)
    print(f"wrote {args.out}")
    return 0
