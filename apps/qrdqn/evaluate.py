"""Evaluation protocol: epsilon-greedy (epsilon_eval = 0.001 on Atari) on the mean of the quantiles,
raw game scores (no clipping), whole games (no life-loss terminals), per-episode returns to CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wdist_apps.qrdqn.config import QRDQNConfig
from wdist_apps.qrdqn.envs import VectorEnv
from wdist_apps.qrdqn.networks import QuantileNetwork, greedy_action
from wdist_apps.runtime import CSVLogger, load_checkpoint, progress
from wdist_apps.runtime.config import from_dict


def load_agent(checkpoint: str | Path, device: torch.device) -> tuple[QRDQNConfig, QuantileNetwork]:
    """The config and the online network stored in a training checkpoint (QR-DQN or PQN)."""
    from wdist_apps.qrdqn.agent import build_network

    state = load_checkpoint(checkpoint, map_location=device,
                            require=("config", "net", "num_actions", "obs_shape"), kind="QR-DQN")
    if state.get("agent") == "pqn":
        from wdist_apps.qrdqn import pqn

        return pqn.load_agent(checkpoint, device)
    cfg = from_dict(QRDQNConfig, state["config"], f"{checkpoint} config")
    net = build_network(cfg, state["num_actions"], tuple(state["obs_shape"])).to(device)
    net.load_state_dict(state["net"])
    return cfg, net.eval()


def evaluate(
    net: QuantileNetwork,
    cfg: QRDQNConfig,
    episodes: int,
    device: torch.device,
    epsilon: float | None = None,
    seed: int = 12345,
    num_envs: int | None = None,
    csv_path: str | Path | None = None,
) -> list[float]:
    """Play ``episodes`` whole episodes; returns their raw returns (in the order they finish)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    epsilon = cfg.epsilon_eval if epsilon is None else epsilon
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    num_envs = min(num_envs or cfg.num_envs, episodes)
    envs = VectorEnv(cfg, num_envs=num_envs)
    rng = np.random.default_rng(seed)
    obs = envs.reset(seed=seed)
    running = np.zeros(num_envs)
    returns: list[float] = []
    budget = episodes - num_envs  # episodes still to start after the first batch
    active = np.ones(num_envs, dtype=bool)
    final = np.zeros(num_envs, dtype=bool)
    bar = progress(total=episodes, desc="qrdqn eval", unit="episode")
    try:
        while active.any():
            with torch.no_grad():
                greedy = greedy_action(net(torch.as_tensor(obs, device=device)))
            actions = np.where(rng.random(num_envs) < epsilon,
                               rng.integers(0, envs.num_actions, num_envs), greedy.cpu().numpy())
            step = envs.step(actions)
            running += np.where(final, 0.0, step.reward)
            final = step.terminated | step.truncated
            for e in np.flatnonzero(final & active):
                returns.append(float(running[e]))
                bar.update(1)
                bar.set_postfix(ret=f"{running[e]:.1f}", refresh=False)
                running[e] = 0.0
                if budget > 0:
                    budget -= 1
                else:
                    active[e] = False
            obs = step.obs
    finally:
        bar.close()
        envs.close()
    if csv_path is not None:
        with CSVLogger(csv_path) as log:
            for i, ret in enumerate(returns):
                log.log({"episode": i, "return": ret})
    return returns
