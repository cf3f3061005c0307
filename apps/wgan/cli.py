"""``wdist wgan {train,sample,eval,results}``: argparse only at import time (fast ``--help``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wdist_apps.runtime import add_device_arg
from wdist_apps.runtime.run import add_run_args


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "wgan", help="WGAN generator: weight clipping, gradient penalty or spectral norm",
        description="Train and evaluate Wasserstein GANs on the wdist critic.",
    )
    sub = parser.add_subparsers(dest="wgan_command", metavar="{train,sample,eval,results}",
                                required=True)

    train = sub.add_parser("train", help="train a generator (CSV log, samples, checkpoints)")
    add_run_args(train, "wgan", default_out=None,
                 config_default="8 Gaussians, gradient penalty; --out: the config's out_dir")
    train.add_argument("--lipschitz", choices=("clip", "gp", "sn"), help="Lipschitz method")
    train.add_argument("--data", help="toy set, mnist, digits, an image folder or a .npz file")
    train.add_argument("--steps", type=int, help="generator iterations")
    train.add_argument("--seed", type=int)
    train.add_argument("--features", type=Path,
                       help="TorchScript or state-dict feature extractor for the Fréchet distance")
    train.set_defaults(func=_train)

    sample = sub.add_parser(
        "sample", help="write samples: a .png grid (toy data: a scatter plot) or a .npz array",
        description="--out x.png: a grid image; --out x.npz: the raw samples (images: uint8 "
        "[N, C, H, W] under key 'images'; toy data: float32 [N, 2] under key 'points'), for "
        "your own metric tools.")
    sample.add_argument("--checkpoint", type=Path, required=True)
    sample.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    sample.add_argument("--out", type=Path, default=Path("grid.png"),
                        help="a .png (grid) or .npz (raw samples) path (default grid.png)")
    sample.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--no-ema", action="store_true", help="use the raw generator")
    add_device_arg(sample)
    sample.set_defaults(func=_sample)

    evaluate = sub.add_parser("eval", help="exact W1 (toys) or Fréchet distance (images)")
    evaluate.add_argument("--checkpoint", type=Path, required=True)
    evaluate.add_argument("--features", type=Path, help="feature extractor file (see train)")
    evaluate.add_argument("--no-ema", action="store_true", help="use the raw generator")
    evaluate.add_argument("--inception", type=Path,
                          help="local Inception-v3 weights (TorchScript, or torch-fidelity's "
                          ".pth with torchmetrics): adds FID against the whole training set")
    evaluate.add_argument("--n", type=int, default=10_000,
                          help="generated samples for --inception FID (default 10,000)")
    add_device_arg(evaluate)
    evaluate.set_defaults(func=_eval)

    results = sub.add_parser("results", help="the results tables and figures (each run's wall and "
                             "CPU seconds are in results/wgan/results.md; --out results/wgan "
                             "regenerates the committed ones)")
    results.add_argument("--out", type=Path, default=Path("runs/wgan/results"),
                         help="output folder (default: runs/wgan/results; the committed tables "
                         "are regenerated with --out results/wgan)")
    results.add_argument("--mnist-steps", type=int, help="MNIST generator iterations per run")
    results.add_argument("--toy-steps", type=int, help="toy generator iterations per run")
    results.add_argument("--parts", nargs="+", choices=("toy", "mnist"), default=["toy", "mnist"])
    results.add_argument("--mnist-config", metavar="NAME|FILE",
                         help="one config for every method, a built-in name or a YAML file "
                         "(default: mnist for gp, mnist_sn for sn, mnist_clip for clip)")
    results.add_argument("--methods", nargs="+", choices=("clip", "gp", "sn"),
                         default=["gp", "sn"], help="MNIST methods (default gp sn)")
    results.add_argument("--seeds", nargs="+", type=int, default=[0],
                         help="MNIST seeds (default 0)")
    add_device_arg(results)
    results.set_defaults(func=_results)


def _train(args: argparse.Namespace) -> int:
    from wdist_apps.runtime import distributed, load_config, open_run_dir, resolve_device
    from wdist_apps.runtime.run import config_file, config_overrides
    from wdist_apps.wgan.config import WGANConfig
    from wdist_apps.wgan.trainer import Trainer

    overrides = config_overrides(args, lipschitz=args.lipschitz, data=args.data,
                                 steps=args.steps, seed=args.seed, out_dir=args.out)
    cfg = load_config(WGANConfig, config_file(args), overrides)
    open_run_dir(cfg.out_dir, resume=args.resume, overwrite=args.overwrite)
    trainer = Trainer(cfg, resolve_device(args.device), features=args.features)
    metrics = trainer.fit(resume=args.resume, time_limit_s=args.time_limit)
    if not distributed.is_main():  # under torchrun, rank 0 reports
        return 0
    print(f"run directory: {trainer.run_dir}")
    print("final metrics: " + ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return 0


def _load(args: argparse.Namespace, features: Path | None = None, real_data: bool = False):
    """The trainer saved in ``--checkpoint``; image data is loaded only when ``real_data``
    (metrics that compare with it), else the models are built from the checkpoint's shape."""
    from wdist_apps.runtime import load_checkpoint, resolve_device
    from wdist_apps.wgan.config import WGANConfig
    from wdist_apps.wgan.trainer import CHECKPOINT_KEYS, Trainer

    state = load_checkpoint(args.checkpoint, require=CHECKPOINT_KEYS, kind="WGAN")
    cfg = WGANConfig(**state["config"])
    if real_data and not (cfg.is_toy or cfg.is_builtin_images or Path(cfg.data).exists()):
        raise FileNotFoundError(
            f"eval compares with the training data, {cfg.data} (as recorded in "
            f"{args.checkpoint}), which is not found; put it back at that path"
        )
    shape = None if real_data else tuple(state["shape"])
    trainer = Trainer(cfg, resolve_device(args.device), features, shape=shape)
    trainer.load_state_dict(state)
    return trainer


def _sample(args: argparse.Namespace) -> int:
    import torch

    from wdist_apps.wgan.evaluate import generate
    from wdist_apps.wgan.plots import save_grid, save_samples_npz, save_toy_figure

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    suffix = args.out.suffix.lower()
    if suffix not in (".png", ".npz"):
        raise ValueError(f"--out must end in .png (a grid) or .npz (raw samples), got {args.out}")
    if args.out.is_dir() or (args.out.exists() and not args.overwrite):
        raise FileExistsError(f"--out {args.out} already exists: pass --overwrite to replace it, "
                              "or another --out")
    trainer = _load(args)
    gen = trainer.generator if args.no_ema else trainer.sampler
    rng = torch.Generator().manual_seed(args.seed)
    x = generate(gen, args.n, trainer.cfg.z_dim, trainer.device, rng)
    if suffix == ".npz":
        path = save_samples_npz(x, args.out, is_toy=trainer.cfg.is_toy)
    elif trainer.cfg.is_toy:
        path = save_toy_figure(trainer.eval_real, x, trainer.critic.module, args.out,
                               f"{trainer.cfg.data}, {trainer.cfg.lipschitz}, step {trainer.step}")
    else:
        path = save_grid(x, args.out)
    print(f"wrote {path}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    trainer = _load(args, args.features, real_data=True)
    metrics = {"step": trainer.step, **trainer.evaluate(use_ema=not args.no_ema)}
    if args.inception is not None:
        metrics["inception_fid"] = _inception_fid(trainer, args)
    if len(metrics) == 1:
        raise ValueError(
            "no metric applies: images other than 1x32x32 need --features (a feature extractor)"
        )
    print(json.dumps(metrics, indent=2))
    return 0


def _inception_fid(trainer, args: argparse.Namespace) -> dict:
    import torch

    from wdist_apps.wgan.data import iter_images
    from wdist_apps.wgan.evaluate import generate
    from wdist_apps.wgan.fid import InceptionFeatures, inception_fid

    cfg = trainer.cfg
    if cfg.is_toy:
        raise ValueError("--inception: toy data is scored by exact W1, FID applies to images")
    if args.n < 2:
        raise ValueError(f"--n must be >= 2 for a covariance, got {args.n}")
    model = InceptionFeatures(args.inception, trainer.device)
    gen = trainer.generator if args.no_ema else trainer.sampler
    fake = generate(gen, args.n, cfg.z_dim, trainer.device, torch.Generator().manual_seed(0))
    real = iter_images(cfg.data, cfg.image_size, cfg.channels, workers=cfg.workers)
    return inception_fid(fake, real, model, device=trainer.device)


def _results(args: argparse.Namespace) -> int:
    from wdist_apps.runtime import resolve_device
    from wdist_apps.runtime.run import find_config
    from wdist_apps.wgan.results import regenerate

    config = find_config("wgan", args.mnist_config) if args.mnist_config else None
    written = regenerate(args.out, resolve_device(args.device), args.mnist_steps, args.toy_steps,
                         tuple(args.parts), config, tuple(args.methods),
                         tuple(args.seeds))
    for path in written:
        print(path)
    return 0
