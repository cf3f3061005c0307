"""``wdist qrdqn train | pqn | eval | plot`` (heavy imports happen inside the handlers)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from wdist_apps.runtime.device import add_device_arg

    parser = subparsers.add_parser(
        "qrdqn", help="QR-DQN distributional RL on Atari / gymnasium (Dabney et al. 2018)",
        description="Train, evaluate and plot QR-DQN agents.",
    )
    sub = parser.add_subparsers(dest="qrdqn_command", metavar="{train,pqn,eval,plot}",
                                required=True)

    train = sub.add_parser("train", help="train an agent (CSV log, atomic checkpoints, --resume)")
    _add_train_args(train, agent="qrdqn")
    pqn = sub.add_parser("pqn", help="train the quantile PQN agent (parallel envs, lambda-returns,"
                         " LayerNorm, no replay or target network)")
    _add_train_args(pqn, agent="pqn")

    ev = sub.add_parser("eval", help="evaluate a checkpoint (epsilon-greedy, raw scores)")
    ev.add_argument("--checkpoint", required=True, help="a checkpoint.pt written by train")
    ev.add_argument("--episodes", type=int, default=30)
    ev.add_argument("--epsilon", type=float, default=None,
                    help="exploration during evaluation (default: the config's epsilon_eval)")
    ev.add_argument("--seed", type=int, default=12345)
    ev.add_argument("--out", default=None, help="CSV of per-episode returns (default: next to "
                    "the checkpoint, eval.csv)")
    add_device_arg(ev)
    ev.set_defaults(func=_eval)

    pl = sub.add_parser("plot", help="learning curves (PNG) from one or more log.csv")
    pl.add_argument("logs", nargs="+", help="log.csv files written by train")
    pl.add_argument("--out", default="curve.png", help="PNG to write")
    pl.add_argument("--reference", action="append", default=[], metavar="LABEL=SCORE",
                    help="horizontal reference line, e.g. 'QR-DQN paper=21.0' (repeatable)")
    pl.add_argument("--reference-curves", default=None, metavar="CSV",
                    help="published per-iteration returns to draw, e.g. "
                    "results/qrdqn/dopamine/pong_qrdqn.csv (Dopamine's QR-DQN on Pong)")
    pl.add_argument("--max-frames", type=float, default=None,
                    help="cut the x axis at this many frames")
    pl.set_defaults(func=_plot)


def _add_train_args(parser: argparse.ArgumentParser, agent: str) -> None:
    from wdist_apps.runtime.run import add_run_args

    default = "the paper's Atari settings" if agent == "qrdqn" else "PQNConfig's CartPole"
    add_run_args(parser, "qrdqn", default_out=f"runs/{agent}", config_default=default)
    parser.add_argument("--env", dest="env_id", default=None,
                        help="gymnasium id, e.g. ALE/Pong-v5")
    parser.add_argument("--total-frames", type=int, default=None,
                        help="emulator frames to train for (Atari: 4 per agent step)")
    parser.add_argument("--num-envs", type=int, default=None, help="parallel environments")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--eval-episodes", type=int, default=0,
                        help="after training, evaluate this many episodes into OUT/eval.csv")
    parser.set_defaults(func=_train, agent=agent)


def _train(args: argparse.Namespace) -> int:
    from wdist_apps.qrdqn.run import train_and_report
    from wdist_apps.runtime import distributed
    from wdist_apps.runtime.run import config_file, config_overrides

    overrides = config_overrides(args, env_id=args.env_id, total_frames=args.total_frames,
                                 num_envs=args.num_envs, seed=args.seed)
    summary = train_and_report(config_file(args), overrides, args.out, args.device, args.resume,
                               args.time_limit, args.eval_episodes, agent=args.agent,
                               overwrite=args.overwrite)
    if not distributed.is_main():  # under torchrun, rank 0 reports
        return 0
    for key in ("frames", "updates", "episodes", "wall_s", "eval_mean_return"):
        if key in summary:
            print(f"{key}: {summary[key]}")
    print(f"wrote {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from wdist_apps.qrdqn.evaluate import evaluate, load_agent
    from wdist_apps.runtime import resolve_device

    device = resolve_device(args.device)
    cfg, net = load_agent(args.checkpoint, device)
    out = Path(args.out) if args.out else Path(args.checkpoint).with_name("eval.csv")
    returns = evaluate(net, cfg, args.episodes, device, args.epsilon, args.seed, csv_path=out)
    print(f"{len(returns)} episodes: mean return {np.mean(returns):.2f} "
          f"(std {np.std(returns):.2f}); wrote {out}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from wdist_apps.qrdqn.plot import plot_curves

    reference = {}
    for item in args.reference:
        label, sep, value = item.rpartition("=")
        if not sep:
            raise ValueError(f"--reference expects LABEL=SCORE, got {item!r}")
        reference[label] = float(value)
    out = plot_curves(args.logs, args.out, reference=reference,
                      reference_curves=args.reference_curves, max_frames=args.max_frames)
    print(f"wrote {out}")
    return 0
