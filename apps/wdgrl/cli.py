"""``wdist wdgrl``: run one adaptation experiment from a config, or the whole benchmark.

    wdist wdgrl --config configs/wdgrl/moons50.yaml [--seeds 5] [--device cpu] [--resume]
    wdist wdgrl --config configs/wdgrl/files.yaml --source src.npz --target tgt.npz
    wdist wdgrl bench [--seeds 3] [--epochs N] [--methods ...] [--out results/wdgrl]
                      [--device cpu] [--resume]

One run writes to runs/wdgrl by default (git-ignored); only ``bench`` defaults to the committed
results/wdgrl.
"""

from __future__ import annotations

import argparse

from wdist_apps.runtime import add_device_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "wdgrl",
        help="Wasserstein-guided domain adaptation (WDGRL) and its baselines",
        description="Train WDGRL (Shen et al. 2018) and the baselines (source-only, DANN, Deep "
        "CORAL, target-supervised) on one task; or `wdist wdgrl bench` for every task.",
    )
    p.add_argument("mode", nargs="?", choices=["run", "bench"], default="run",
                   help="run (default): one config; bench: every benchmark task "
                   "(the configs in configs/wdgrl/ except files.yaml)")
    p.add_argument("--config", help="YAML experiment file (configs/wdgrl/*.yaml)")
    p.add_argument("--seeds", type=int, help="number of seeds (overrides the config)")
    p.add_argument("--epochs", type=int, help="epochs per run (overrides the config)")
    p.add_argument("--methods", nargs="+", help="subset of methods (overrides the config; "
                   "bench: writes bench_<methods>.md, e.g. --methods knn_source_only ot_emd "
                   "ot_sinkhorn ot_linear)")
    p.add_argument("--source", help="source feature file (.npz/.csv) for task 'files'")
    p.add_argument("--target", help="target feature file (.npz/.csv) for task 'files'")
    p.add_argument("--out", help="output folder (default runs/wdgrl; bench: results/wdgrl)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch (default 1: fastest for these small networks)")
    p.add_argument("--resume", action="store_true",
                   help="continue interrupted runs from their last epoch checkpoint")
    add_device_arg(p)
    p.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    import torch

    from wdist_apps.wdgrl.report import run_bench, run_one

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)

    if args.mode == "bench":
        ignored = [opt for opt, v in (("--config", args.config),
                                      ("--source", args.source), ("--target", args.target))
                   if v is not None]
        if ignored:
            raise ValueError(f"`wdist wdgrl bench` runs every task's own config and does not "
                             f"take {', '.join(ignored)}; use `wdist wdgrl --config ...` for one "
                             "task")
        run_bench(args.out or "results/wdgrl", args.device, seeds=args.seeds,
                  epochs=args.epochs, resume=args.resume, methods=args.methods)
        return 0
    if not args.config:
        raise ValueError("--config is required (e.g. --config configs/wdgrl/moons50.yaml)")
    overrides = {"seeds": args.seeds, "epochs": args.epochs, "methods": args.methods,
                 "source_path": args.source, "target_path": args.target}
    run_one(args.config, overrides, args.out or "runs/wdgrl", args.device, resume=args.resume)
    return 0
