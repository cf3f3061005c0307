"""The frame-once replay: stacks rebuilt on sampling equal the env's own stacked observations,
across resets, life losses, truncations, env columns and the circular wrap; n-step targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wdist_apps.qrdqn.config import QRDQNConfig
from wdist_apps.qrdqn.envs import VectorEnv
from wdist_apps.qrdqn.replay import ReplayBuffer


def _record(env_id: str, steps: int, rows: int, num_envs: int = 3, max_frames: int = 400):
    """Drive a real Atari vector env with random actions, filling a replay the way train() does.

    Returns the replay, the env's stacked observations per (row, env) for the rows still stored,
    and the number of resets / life losses seen."""
    cfg = QRDQNConfig(env_id=env_id, num_envs=num_envs, max_episode_frames=max_frames,
                      replay_capacity=rows * num_envs, learning_starts=rows * num_envs)
    envs = VectorEnv(cfg)
    replay = ReplayBuffer(cfg.replay_capacity, num_envs, envs.frame_shape, torch.uint8,
                          stack=4, n_step=1, gamma=0.99)
    rng = np.random.default_rng(0)
    obs = envs.reset(seed=1)
    first = np.ones(num_envs, dtype=bool)
    final = np.zeros(num_envs, dtype=bool)
    history, resets, lives_lost = [], 0, 0
    for _ in range(steps):
        actions = rng.integers(0, envs.num_actions, num_envs)
        step = envs.step(actions)
        done = step.terminated | step.life_lost
        replay.add(envs.newest_frame(obs), actions, np.where(final, 0.0, step.reward),
                   done & ~final, first, ~final)
        history.append(obs.copy())
        resets += int(final.sum())
        lives_lost += int((step.life_lost & ~step.terminated).sum())
        first, final = final, step.terminated | step.truncated
        obs = step.obs
    envs.close()
    stored = np.stack(history[-replay.size:])  # [rows, E, 4, 84, 84], logical order
    return replay, stored, resets, lives_lost


@pytest.mark.parametrize("env_id", ["ALE/Pong-v5", "ALE/Breakout-v5"])
def test_rebuilt_stacks_equal_env_observations(env_id):
    # 100-step truncations (Pong) or game overs and life losses (Breakout), plus a wrap-around.
    replay, stored, resets, lives_lost = _record(env_id, steps=420, rows=150)
    assert replay.size == 150 and replay.pos == 420 % 150
    assert resets >= 3
    if env_id == "ALE/Breakout-v5":
        assert lives_lost >= 3
    logical = torch.arange(3, replay.size).repeat_interleave(replay.num_envs)
    env = torch.arange(replay.num_envs).repeat(replay.size - 3)
    rebuilt = replay.stacked(logical, env).numpy()
    expected = stored[logical.numpy(), env.numpy()]
    assert rebuilt.shape == (len(logical), 4, 84, 84)
    np.testing.assert_array_equal(rebuilt, expected)
    # And episode starts really are zero-padded (the env shows zeros before a reset frame).
    firsts = replay.firsts[replay._row(logical), env].numpy()
    assert firsts.any() and (rebuilt[firsts, :3] == 0).all()


def test_sampled_next_observation_is_the_following_env_observation():
    replay, stored, _, _ = _record("ALE/Pong-v5", steps=260, rows=300)
    gen = torch.Generator().manual_seed(0)
    batch = replay.sample(64, gen)
    for i in range(64):
        hits = [(t, e) for t in range(3, replay.size - 1) for e in range(replay.num_envs)
                if np.array_equal(stored[t, e], batch.obs[i].numpy())]
        assert any(np.array_equal(stored[t + 1, e], batch.next_obs[i].numpy()) for t, e in hits)


def _flat_replay(n_step: int) -> ReplayBuffer:
    """One env, scalar observations equal to the row index, a hand-written episode layout.

    rows: 0 1 2 3 4 5 6 7 8 9
    obs : 0 1 2 3 4 5 6 7 8 9
    rew : 1 1 1 1 0 1 1 1 1 1     (row 4 is a final observation: its step is the reset)
    done: . . . T . . . . . .     (the step from row 3 ended the game)
    """
    replay = ReplayBuffer(10, 1, (1,), torch.float32, stack=1, n_step=n_step, gamma=0.5)
    for t in range(10):
        replay.add(np.array([[t]]), np.array([t % 2]), np.array([0.0 if t == 4 else 1.0]),
                   np.array([t == 3]), np.array([t in (0, 5)]), np.array([t != 4]))
    return replay


def test_n_step_returns_stop_at_terminals():
    replay = _flat_replay(n_step=3)
    gen = torch.Generator().manual_seed(0)
    seen = {}
    for _ in range(20):
        b = replay.sample(32, gen)
        for o, ret, disc, nxt in zip(b.obs[:, 0], b.returns, b.discounts, b.next_obs[:, 0]):
            seen[int(o)] = (float(ret), float(disc), int(nxt))
    assert 4 not in seen  # a final observation never starts a transition
    assert seen[0] == (1 + 0.5 + 0.25, 0.125, 3)  # full 3-step window
    assert seen[1] == (1.75, 0.0, 4)  # r1 + g r2 + g^2 r3, then terminal
    assert seen[3] == (1.0, 0.0, 4)  # the terminal step alone
    assert seen[5] == (1.75, 0.125, 8)  # the new episode
    assert max(seen) == 6  # rows 7.. lack a full window of later rows


def test_one_step_replay_matches_dqn_transitions():
    replay = _flat_replay(n_step=1)
    gen = torch.Generator().manual_seed(1)
    b = replay.sample(256, gen)
    obs, nxt = b.obs[:, 0].long(), b.next_obs[:, 0].long()
    assert torch.equal(nxt, obs + 1)
    assert torch.equal(b.actions, obs % 2)
    expected_disc = torch.where(obs == 3, 0.0, 0.5)
    torch.testing.assert_close(b.discounts, expected_disc)


def test_replay_rejects_bad_sizes():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(8, 4, (84, 84), torch.uint8, stack=4)
    replay = ReplayBuffer(100, 1, (1,), torch.float32, stack=4)
    with pytest.raises(ValueError, match="too few"):
        replay.sample(4, torch.Generator())
