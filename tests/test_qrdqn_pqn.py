"""Quantile PQN: the lambda-return targets against their forward-view definition and PQN's scalar
recursion, the LayerNorm torso, the agent end to end on CartPole (learning, resume, CLI)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wdist_apps.cli import main
from wdist_apps.qrdqn.evaluate import evaluate, load_agent
from wdist_apps.qrdqn.networks import ChannelLayerNorm, QuantileNetwork
from wdist_apps.qrdqn.pqn import PQNConfig, epsilon_at, lambda_return_quantiles, train
from wdist_apps.runtime import load_checkpoint, load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "qrdqn" / "pqn-cartpole.yaml"


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("WDIST_NO_PROGRESS", "1")


def _forward_view(rewards, z, gamma, lam):
    """G^lambda_t = (1 - lam) sum_{n=1}^{T-t-1} lam^(n-1) G^(n)_t + lam^(T-t-1) G^(T-t)_t with the
    n-step returns G^(n)_t = sum_{k<n} gamma^k r_{t+k} + gamma^n Z_{t+n}: no episode ends."""
    T = rewards.shape[0]
    out = torch.zeros_like(z)
    for t in range(T):
        for n in range(1, T - t + 1):
            g = sum(gamma**k * rewards[t + k, :, None] for k in range(n)) + gamma**n * z[t + n - 1]
            weight = lam ** (n - 1) * ((1 - lam) if n < T - t else 1.0)
            out[t] += weight * g
    return out


def test_lambda_returns_equal_the_forward_view():
    g = torch.Generator().manual_seed(0)
    T, E, N = 6, 3, 4
    rewards = torch.randn(T, E, generator=g, dtype=torch.float64)
    z = torch.randn(T, E, N, generator=g, dtype=torch.float64).sort(dim=2).values
    zeros = torch.zeros(T, E, dtype=torch.float64)
    for lam in (0.0, 0.65, 1.0):
        got = lambda_return_quantiles(rewards, zeros, zeros, z, 0.9, lam)
        torch.testing.assert_close(got, _forward_view(rewards, z, 0.9, lam))
    # lambda = 0 is the one-step target r_t + gamma Z_{t+1}, quantile by quantile
    got = lambda_return_quantiles(rewards, zeros, zeros, z, 0.9, 0.0)
    torch.testing.assert_close(got, rewards[..., None] + 0.9 * z)


def _purejaxql_scalar(rewards, dones, next_q, gamma, lam):
    """purejaxql's _get_target recursion (scalar Q, done = termination), written as there."""
    T = rewards.shape[0]
    g = rewards[-1] + gamma * (1 - dones[-1]) * next_q[-1]
    out = [g]
    for t in reversed(range(T - 1)):
        bootstrap = rewards[t] + gamma * (1 - dones[t]) * next_q[t]
        g = bootstrap + gamma * lam * (g - next_q[t])
        g = (1 - dones[t]) * g + dones[t] * rewards[t]
        out.append(g)
    return torch.stack(out[::-1])


def test_mean_of_quantile_targets_is_pqn_lambda_return():
    """With terminations inside the rollout, the mean over quantiles of our targets equals PQN's
    scalar lambda-return of the mean Q (the quantile average is linear)."""
    g = torch.Generator().manual_seed(1)
    T, E, N = 8, 4, 5
    rewards = torch.randn(T, E, generator=g, dtype=torch.float64)
    z = torch.randn(T, E, N, generator=g, dtype=torch.float64).sort(dim=2).values
    dones = (torch.rand(T, E, generator=g) < 0.25).double()
    got = lambda_return_quantiles(rewards, dones, dones, z, 0.99, 0.95).mean(dim=2)
    expected = _purejaxql_scalar(rewards, dones, z.mean(dim=2), 0.99, 0.95)
    torch.testing.assert_close(got, expected)
    # a terminal step's target is its reward alone (a Dirac)
    t, e = dones.nonzero()[0].tolist()
    full = lambda_return_quantiles(rewards, dones, dones, z, 0.99, 0.95)
    torch.testing.assert_close(full[t, e], rewards[t, e].expand(N))


def test_truncation_bootstraps_from_the_final_observation_only():
    # Env 0 is truncated after step 1 (ends, not done): G_1 = r_1 + gamma Z_2 (the final
    # observation's quantiles), never continued into the next episode's G_2.
    T, N = 4, 3
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    z = torch.arange(T * N, dtype=torch.float32).view(T, 1, N)
    ends = torch.tensor([[0.0], [1.0], [0.0], [0.0]])
    got = lambda_return_quantiles(rewards, torch.zeros(T, 1), ends, z, 0.5, 0.8)
    torch.testing.assert_close(got[1, 0], 2.0 + 0.5 * z[1, 0])
    # and step 0 still mixes its one-step target with G_1
    torch.testing.assert_close(got[0, 0], 1.0 + 0.5 * (0.2 * z[0, 0] + 0.8 * got[1, 0]))


def test_channel_layer_norm_normalises_channels_per_position():
    x = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(0))
    norm = ChannelLayerNorm(5)
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, unbiased=False, keepdim=True)
    torch.testing.assert_close(norm(x), (x - mean) / torch.sqrt(var + norm.eps))
    net = QuantileNetwork(6, 8, "nature", layer_norm=True)
    assert sum(isinstance(m, ChannelLayerNorm) for m in net.modules()) == 3
    assert net(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape == (2, 6, 8)


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="'td_lambda'"):
        PQNConfig(td_lambda=1.5)
    with pytest.raises(ValueError, match="'num_minibatches'"):
        PQNConfig(num_envs=2, num_steps=2, num_minibatches=8)
    with pytest.raises(ValueError, match="'torso'"):
        PQNConfig(env_id="ALE/Pong-v5", torso="mlp")
    cfg = PQNConfig(epsilon_start=1.0, epsilon_final=0.1, epsilon_decay_steps=100)
    assert [epsilon_at(s, cfg) for s in (0, 50, 500)] == pytest.approx([1.0, 0.55, 0.1])


def test_pqn_learns_cartpole(tmp_path):
    """The CI-sized learning check: configs/qrdqn/pqn-cartpole.yaml, then 10 greedy games.
    A uniformly random policy scores about 22 on CartPole-v1."""
    torch.set_num_threads(1)
    cfg = load_config(PQNConfig, CONFIG)
    result = train(cfg, tmp_path, torch.device("cpu"))
    returns = evaluate(result["net"], cfg, episodes=10, device=torch.device("cpu"), epsilon=0.0)
    assert np.mean(returns) > 100, returns


def test_resume_and_cli(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["qrdqn", "pqn", "--config", str(CONFIG), "--set", "num_envs=4",
            "--set", "num_steps=8", "--set", "num_minibatches=2", "--set", "num_epochs=2",
            "--out", str(out),
            "--device", "cpu"]
    assert main([*args, "--total-frames", "64", "--eval-episodes", "2"]) == 0
    for name in ("checkpoint.pt", "log.csv", "curve.png", "eval.csv", "summary.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text())["update_steps"] == 2
    assert main([*args, "--total-frames", "128", "--resume"]) == 0
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["counters"]["update_steps"] == 4 and state["counters"]["env_step"] == 128
    adam_steps = {int(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {state["counters"]["grad_steps"]} == {4 * 2 * 2}
    with open(out / "log.csv", newline="") as fh:
        rollouts = [r for r in csv.DictReader(fh) if r["td_loss"]]
    assert [int(r["update_steps"]) for r in rollouts] == [1, 2, 3, 4]
    # the shared eval command reads PQN checkpoints too
    assert main(["qrdqn", "eval", "--checkpoint", str(out / "checkpoint.pt"), "--episodes", "2",
                 "--out", str(tmp_path / "e.csv"), "--device", "cpu"]) == 0
    cfg, _ = load_agent(out / "checkpoint.pt", torch.device("cpu"))
    assert isinstance(cfg, PQNConfig) and cfg.num_envs == 4
    assert main([*args, "--set", "td_lambda=2"]) == 2
    assert "td_lambda" in capsys.readouterr().err
