"""QR-DQN speed: ours vs sb3-contrib's QRDQN on Atari Pong, side by side in one process.

Same env (ALE/Pong-v5 dynamics: frame skip 4, sticky actions 0.25, 84x84 grey, stack 4), same
network (Nature-DQN torso, 512 units, 200 quantiles per action), same batch (32), same replay
ratio (one update per 4 agent steps), torch on CPU with the same thread count. Three numbers:

1. acting frames/s: environment + epsilon-greedy policy (epsilon 0.01) + replay writes;
2. learner updates/s: sample a batch of 32 from a filled replay + one Adam step;
3. end to end frames/s at the paper's replay ratio.

All frames/s are steady state: timing starts after 1,000 agent steps (setup, and the replay's
warm-up: learning starts there).

The learner's ceiling on this machine is printed with them: the FLOPs of one batch-32 update
(torch's FlopCounterMode: convolutions and matrix products of the online forward + backward and
the target forward) against the single-thread sgemm rate measured in the same process.

Each is the median of ``--repeats`` interleaved runs; ratios are ours / sb3, with the range of the
per-repeat ratios beside them. ``--compile-update`` adds our learner step under ``torch.compile``:
eager against eager, the two learners are within a few percent, so any larger ratio in the
compiled column is the compiler's. Writes results/qrdqn/benchmark.md and .json with the machine,
versions and command. Needs ``pip install sb3-contrib opencv-python-headless`` (the ``bench``
extra).

``--pqn-cartpole FRAMES`` instead times our QR-DQN (configs/qrdqn/cartpole.yaml) and the quantile
PQN (configs/qrdqn/pqn-cartpole.yaml) end to end on CartPole-v1 in this one process, each for
FRAMES frames, interleaved, and writes results/qrdqn/pqn.md and .json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wdist_apps.qrdqn.agent import _make_update, build_network, make_replay, train  # noqa: E402
from wdist_apps.qrdqn.config import QRDQNConfig  # noqa: E402
from wdist_apps.qrdqn.envs import VectorEnv  # noqa: E402
from wdist_apps.runtime import load_config  # noqa: E402
from wdist_apps.runtime.logging import read_csv  # noqa: E402
from wdist_apps.runtime.machine import command_line, describe  # noqa: E402

WARMUP_STEPS = 1000  # agent steps before timing starts (and before learning starts in e2e)
# Both act at the paper's final epsilon throughout: sb3 skips the network for exploratory
# actions, so an epsilon near 1 would time its random-action shortcut, not acting.
EPSILON = 0.01


def ours_config(num_envs: int, learning_starts: int, total_frames: int,
                compile_update: bool = False) -> QRDQNConfig:
    return load_config(QRDQNConfig, ROOT / "configs/qrdqn/atari-paper.yaml", {
        "num_envs": num_envs, "learning_starts": learning_starts, "total_frames": total_frames,
        "replay_capacity": 20_000, "log_every_steps": WARMUP_STEPS,
        "checkpoint_every_frames": 10**12, "epsilon_start": EPSILON, "epsilon_final": EPSILON,
        "compile_update": compile_update,
    })


def ours_fps(num_envs: int, frames: int, learning_starts: int,
             compile_update: bool = False) -> float:
    """Steady-state frames/s after the first WARMUP_STEPS agent steps (the log's fps column)."""
    cfg = ours_config(num_envs, learning_starts, WARMUP_STEPS * 4 + frames, compile_update)
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, tmp, torch.device("cpu"))
        fps = read_csv(Path(tmp) / "log.csv")["fps"][1:]
    return frames / sum(WARMUP_STEPS * 4 / f for f in fps)


def ours_updates_per_s(num_envs: int, updates: int, compile_update: bool = False) -> float:
    cfg = ours_config(num_envs, 2000, 10**6, compile_update)  # the replay is filled below
    envs = VectorEnv(cfg)
    net = build_network(cfg, envs.num_actions, envs.frame_shape)
    target = build_network(cfg, envs.num_actions, envs.frame_shape)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    replay = make_replay(cfg, envs, torch.device("cpu"))
    rng = np.random.default_rng(0)
    obs = envs.reset(seed=0)
    for _ in range(2000 // num_envs):
        actions = rng.integers(0, envs.num_actions, num_envs)
        step = envs.step(actions)
        replay.add(envs.newest_frame(obs), actions, step.reward, step.terminated,
                   np.zeros(num_envs, bool), np.ones(num_envs, bool))
        obs = step.obs
    envs.close()
    update = _make_update(net, target, optimizer, cfg, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):  # warm-up (and compile)
        update(replay.sample(32, gen))
    start = time.perf_counter()
    for _ in range(updates):
        update(replay.sample(32, gen))
    return updates / (time.perf_counter() - start)


def learner_compute(num_actions: int = 6, batch: int = 32) -> dict[str, float]:
    """GFLOP of one update of the Pong network and this thread's sgemm GFLOP/s (median of 9)."""
    from torch.utils.flop_counter import FlopCounterMode

    from wdist_apps.qrdqn.networks import QuantileNetwork

    torch.manual_seed(0)
    net, target = QuantileNetwork(num_actions, 200), QuantileNetwork(num_actions, 200)
    obs = torch.randint(0, 256, (batch, 4, 84, 84), dtype=torch.uint8)
    counter = FlopCounterMode(display=False)
    with counter:
        net(obs).sum().backward()
        with torch.no_grad():
            target(obs)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    times = []
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return {"gflop_per_update": counter.get_total_flops() / 1e9,
            "sgemm_gflops": 2 * 1024**3 / statistics.median(times[1:]) / 1e9}


def sb3_model(learning_starts: int):
    from sb3_contrib import QRDQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    env = make_atari_env("ALE/Pong-v5", n_envs=1, seed=0,
                         env_kwargs={"frameskip": 1, "repeat_action_probability": 0.25})
    env = VecFrameStack(env, n_stack=4)
    return QRDQN("CnnPolicy", env, learning_rate=5e-5, buffer_size=20_000, batch_size=32,
                 learning_starts=learning_starts, train_freq=4, gradient_steps=1,
                 target_update_interval=10_000, exploration_initial_eps=EPSILON,
                 exploration_final_eps=EPSILON, seed=0,
                 device="cpu", policy_kwargs={"n_quantiles": 200}, verbose=0)


def sb3_fps(frames: int, learning_starts: int) -> float:
    """Steady-state frames/s after the first WARMUP_STEPS agent steps."""
    model = sb3_model(learning_starts)
    model.learn(total_timesteps=WARMUP_STEPS)
    start = time.perf_counter()
    model.learn(total_timesteps=frames // 4, reset_num_timesteps=False)
    return frames / (time.perf_counter() - start)


def sb3_updates_per_s(updates: int) -> float:
    model = sb3_model(learning_starts=10**9)
    model.learn(total_timesteps=2000)
    model.train(gradient_steps=1, batch_size=32)
    start = time.perf_counter()
    model.train(gradient_steps=updates, batch_size=32)
    return updates / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=8, help="our parallel emulators")
    parser.add_argument("--act-frames", type=int, default=40_000)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--e2e-frames", type=int, default=12_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (both)")
    parser.add_argument("--out", default=str(ROOT / "results/qrdqn"))
    parser.add_argument("--compile-update", action="store_true",
                        help="also time ours with compile_update (torch.compile'd learner step)")
    parser.add_argument("--pqn-cartpole", type=int, default=0, metavar="FRAMES",
                        help="only time QR-DQN vs quantile PQN on CartPole for FRAMES frames each")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("WDIST_NO_PROGRESS", "1")
    if args.pqn_cartpole:
        pqn_vs_qrdqn_cartpole(args.pqn_cartpole, args.repeats, args.threads, Path(args.out))
        return
    never = 10**9
    rows = {  # name: (ours(compile_update), sb3-contrib, whether it runs the learner)
        "acting frames/s": (lambda c: ours_fps(args.num_envs, args.act_frames, never, c),
                            lambda: sb3_fps(args.act_frames, never), False),
        "learner updates/s (batch 32)": (
            lambda c: ours_updates_per_s(args.num_envs, args.updates, c),
            lambda: sb3_updates_per_s(args.updates), True),
        "end-to-end frames/s (1 update / 4 steps)": (
            # learning (and a compile) starts inside our untimed warm-up, as sb3's does in its
            lambda c: ours_fps(args.num_envs, args.e2e_frames, WARMUP_STEPS // 2, c),
            lambda: sb3_fps(args.e2e_frames, WARMUP_STEPS), True),
    }
    import ale_py
    import gymnasium
    import sb3_contrib
    import stable_baselines3

    meta = {
        "machine": describe(torch.device("cpu")), "cpu_count": os.cpu_count(),
        "torch_threads": args.threads, "our_num_envs": args.num_envs, "sb3_num_envs": 1,
        "versions": {"torch": torch.__version__, "ale_py": ale_py.__version__,
                     "gymnasium": gymnasium.__version__, "sb3_contrib": sb3_contrib.__version__,
                     "stable_baselines3": stable_baselines3.__version__,
                     "python": sys.version.split()[0]},
        "command": command_line(), "repeats": args.repeats,
        "learner_compute": learner_compute(),
    }
    results = {}
    for name, (ours, theirs, learns) in rows.items():
        runners = {"ours": functools.partial(ours, False)}
        if args.compile_update and learns:
            runners["ours_compiled"] = functools.partial(ours, True)
        runners["sb3_contrib"] = theirs
        runs: dict[str, list[float]] = {key: [] for key in runners}
        for _ in range(args.repeats):  # interleaved, so a load change on the box hits all
            for key, run in runners.items():
                runs[key].append(run())
        r = {key: statistics.median(v) for key, v in runs.items()}
        r |= {f"ratio_{key}": r[key] / r["sb3_contrib"] for key in runners if key != "sb3_contrib"}
        r |= {f"ratio_{key}_range": [min(a / b for a, b in zip(runs[key], runs["sb3_contrib"])),
                                     max(a / b for a, b in zip(runs[key], runs["sb3_contrib"]))]
              for key in runners if key != "sb3_contrib"}
        r |= {f"{key}_runs": v for key, v in runs.items()}
        r["ratio"] = r["ratio_ours"]
        results[name] = r
        print(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()
                                       if not k.endswith(("_runs", "_range"))), flush=True)
        _write(Path(args.out), meta, results)  # after every row, so a cut run keeps its numbers
    print(f"wrote {Path(args.out) / 'benchmark.md'}")


def _write(out: Path, meta: dict, results: dict) -> None:
    meta["load_average_1_5_15_min_at_end"] = os.getloadavg()
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [
        "# QR-DQN speed: ours vs sb3-contrib QRDQN (Pong, CPU)", "",
        f"Machine: {meta['machine']}, {meta['cpu_count']} cores; "
        f"ours {meta['our_num_envs']} envs (ale-py vector env), "
        "sb3-contrib 1 env (its Atari default). Medians of "
        f"{meta['repeats']} interleaved runs; load average at the end "
        f"{meta['load_average_1_5_15_min_at_end'][0]:.1f}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".", "",
        f"Command: `{meta['command']}`", "",
        "| measure | ours | ours, `compile_update` | sb3-contrib | ratio | ratio, compiled |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    def ratio(r: dict, key: str) -> str:
        low, high = r.get(f"ratio_{key}_range", (r[f"ratio_{key}"],) * 2)
        return f"{r[f'ratio_{key}']:.2f}x ({low:.2f}–{high:.2f})"

    for name, r in results.items():
        comp = (f"{r['ours_compiled']:.1f}", ratio(r, "ours_compiled")) \
            if "ours_compiled" in r else ("–", "–")
        lines.append(f"| {name} | {r['ours']:.1f} | {comp[0]} | {r['sb3_contrib']:.1f} | "
                     f"{ratio(r, 'ours')} | {comp[1]} |")
    lines += ["", "Ratios: median of the runs, and in brackets the range of the per-repeat "
              "ratios (each repeat runs every column once, back to back). The `ratio` column is "
              "eager against eager; the compiled column differs from it by `torch.compile` "
              "alone (same loss, same update, tested equal to eager)."]
    learner = results.get("learner updates/s (batch 32)")
    if learner:
        flop = meta["learner_compute"]["gflop_per_update"]
        peak = meta["learner_compute"]["sgemm_gflops"]
        labels = {"ours": "ours eager", "ours_compiled": "ours compiled",
                  "sb3_contrib": "sb3-contrib"}
        rates = ", ".join(f"{label} {learner[key] * flop:.0f} GFLOP/s"
                          for key, label in labels.items() if key in learner)
        lines += ["", f"Learner compute: one batch-32 update is {flop:.2f} GFLOP of convolutions "
                  "and matrix products (torch FlopCounterMode: online forward + backward, target "
                  f"forward); this thread's sgemm runs at {peak:.0f} GFLOP/s, a ceiling of "
                  f"{peak / flop:.0f} updates/s for any learner here. Achieved: {rates}."]
    (out / "benchmark.md").write_text("\n".join(lines) + "\n")


def pqn_vs_qrdqn_cartpole(frames: int, repeats: int, threads: int, out: Path) -> None:
    """End-to-end frames/s (acting + learning, wall clock of ``train``) of our QR-DQN and our
    quantile PQN on CartPole-v1, each at its shipped config cut to ``frames`` frames, interleaved
    ``repeats`` times in this process; then each one's greedy mean return over 10 games."""
    from wdist_apps.qrdqn import pqn
    from wdist_apps.qrdqn.evaluate import evaluate

    agents = {
        "QR-DQN": (QRDQNConfig, ROOT / "configs/qrdqn/cartpole.yaml", train),
        "quantile PQN": (pqn.PQNConfig, ROOT / "configs/qrdqn/pqn-cartpole.yaml", pqn.train),
    }
    runs: dict[str, list[dict]] = {name: [] for name in agents}
    for _ in range(repeats):
        for name, (cls, path, train_fn) in agents.items():
            cfg = load_config(cls, path, {"total_frames": frames, "torch_threads": threads})
            cpu_start = time.process_time()
            with tempfile.TemporaryDirectory() as tmp:
                result = train_fn(cfg, tmp, torch.device("cpu"))
            cpu_s = time.process_time() - cpu_start
            returns = evaluate(result["net"], cfg, 10, torch.device("cpu"), epsilon=0.0)
            runs[name].append({"frames": result["frames"], "wall_s": result["wall_s"],
                               "cpu_s": cpu_s, "fps": result["frames"] / result["wall_s"],
                               "frames_per_cpu_s": result["frames"] / cpu_s,
                               "eval_mean_return": float(np.mean(returns))})
            print(name, runs[name][-1], flush=True)
    meta = {"machine": describe(torch.device("cpu")), "cpu_count": os.cpu_count(),
            "torch_threads": threads, "torch": torch.__version__,
            "python": sys.version.split()[0], "command": command_line(), "repeats": repeats,
            "load_average_1_5_15_min_at_end": os.getloadavg()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "pqn.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=2))
    fps = {name: statistics.median(r["fps"] for r in rs) for name, rs in runs.items()}
    per_cpu = {name: statistics.median(r["frames_per_cpu_s"] for r in rs)
               for name, rs in runs.items()}
    lines = [
        "# Quantile PQN vs QR-DQN on CartPole-v1 (CPU, one process)", "",
        f"Machine: {meta['machine']}, {meta['cpu_count']} cores, torch {meta['torch']} on "
        f"{threads} thread(s), Python {meta['python']}; load average at the end "
        f"{meta['load_average_1_5_15_min_at_end'][0]:.1f}. Each agent at its shipped config "
        f"(`configs/qrdqn/cartpole.yaml`, `configs/qrdqn/pqn-cartpole.yaml`) with total_frames "
        f"{frames}; {repeats} interleaved runs, median.", "",
        f"Command: `{meta['command']}`", "",
        "| agent | frames per CPU second | frames/s, wall clock | greedy mean return, 10 games |",
        "|---|---:|---:|---|",
    ]
    for name, rs in runs.items():
        lines.append(f"| {name} | {per_cpu[name]:.0f} | {fps[name]:.0f} | "
                     + ", ".join(f"{r['eval_mean_return']:.1f}" for r in rs) + " |")
    lines += ["", "Frames per CPU second (the process's CPU time, `time.process_time`) is the "
              "figure that survives a shared machine's load; wall clock is beside it. Ratio "
              f"(quantile PQN / QR-DQN): {per_cpu['quantile PQN'] / per_cpu['QR-DQN']:.2f}x per "
              f"CPU second, {fps['quantile PQN'] / fps['QR-DQN']:.2f}x wall clock."]
    (out / "pqn.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'pqn.md'}")


if __name__ == "__main__":
    main()
