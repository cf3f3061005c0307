"""The agent end to end on CartPole-v1 (CPU): checkpoints, resume, CLI, protocol, learning."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from wdist_apps.cli import main
from wdist_apps.qrdqn.agent import clip_reward, train
from wdist_apps.qrdqn.config import QRDQNConfig
from wdist_apps.qrdqn.envs import VectorEnv
from wdist_apps.qrdqn.evaluate import evaluate, load_agent
from wdist_apps.runtime import ConfigError, load_checkpoint, load_config

CARTPOLE = Path(__file__).resolve().parents[1] / "configs" / "qrdqn" / "cartpole.yaml"


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("WDIST_NO_PROGRESS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny(**overrides) -> QRDQNConfig:
    base = {"total_frames": 1200, "learning_starts": 400, "log_every_steps": 400,
            "checkpoint_every_frames": 800, "mlp_hidden": [64, 64]}
    return load_config(QRDQNConfig, CARTPOLE, {**base, **overrides})


def test_save_load_gives_identical_actions(tmp_path):
    result = train(_tiny(), tmp_path, torch.device("cpu"))
    cfg, loaded = load_agent(tmp_path / "checkpoint.pt", torch.device("cpu"))
    obs = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(obs), result["net"](obs), rtol=0, atol=0)
    assert torch.equal(loaded.greedy(obs), result["net"].greedy(obs))
    assert cfg == _tiny()
    # The checkpoint is not a trivially untrained network: updates happened.
    assert result["updates"] > 0


@pytest.mark.parametrize("period, synced_last_step", [(1200, True), (1000, False)])
def test_target_copy_period_is_in_agent_steps(tmp_path, period, synced_last_step):
    # 1,200 agent steps, updates from step 400 (200 updates in all): a period of 1,200 agent steps
    # copies at the very last step (target = final network); one of 1,000 copies at step 1,000,
    # then 50 more updates move the online network away. Counted in updates (200 < 1,000) neither
    # would ever copy.
    train(_tiny(target_update_period_steps=period), tmp_path, torch.device("cpu"))
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["counters"]["updates"] == 200
    same = all(torch.equal(state["net"][k], state["target_net"][k]) for k in state["net"])
    assert same is synced_last_step


def test_resume_continues_counters_log_and_optimizer(tmp_path):
    first = train(_tiny(total_frames=800), tmp_path, torch.device("cpu"))
    resumed = train(_tiny(total_frames=1600), tmp_path, torch.device("cpu"), resume=True)
    assert first["steps"] == 800 and resumed["steps"] == 1600
    assert resumed["updates"] > first["updates"]
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["counters"]["updates"] == resumed["updates"]
    adam_steps = {int(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {resumed["updates"]}  # Adam's moments carried over, not restarted
    with open(tmp_path / "log.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "frames" and sum(r[0] == "frames" for r in rows) == 1
    frames = [int(r[0]) for r in rows[1:] if r[4]]  # the loss rows
    assert frames == sorted(frames) and frames[-1] == 1600


def test_resume_refuses_a_changed_config_or_foreign_file(tmp_path):
    train(_tiny(total_frames=800), tmp_path, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"config differs in \['lr'\]"):
        train(_tiny(total_frames=1600, lr=0.5), tmp_path, torch.device("cpu"), resume=True)
    torch.save({"weights": 1}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="not a QR-DQN checkpoint"):
        train(_tiny(total_frames=1600), tmp_path, torch.device("cpu"), resume=True)
    with pytest.raises(ValueError, match="not a QR-DQN checkpoint"):
        load_agent(tmp_path / "checkpoint.pt", torch.device("cpu"))


def test_resume_with_saved_replay_never_samples_across_the_restart(tmp_path):
    cfg = _tiny(total_frames=800, save_replay=True)
    train(cfg, tmp_path, torch.device("cpu"))
    train(_tiny(total_frames=1000, save_replay=True), tmp_path, torch.device("cpu"), resume=True)
    replay = load_checkpoint(tmp_path / "checkpoint.pt")["replay"]
    restart = 800 // cfg.num_envs  # the row the resumed run's reset observations went to
    assert replay["firsts"][restart].all()
    assert not replay["valids"][restart - 1].any()  # the row before it is a final observation


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        train(_tiny(), tmp_path, torch.device("cpu"), resume=True)


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(QRDQNConfig, CARTPOLE, {"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="'N'"):
        QRDQNConfig(N=0)
    with pytest.raises(ValueError, match="gamma"):
        QRDQNConfig(gamma=1.5)
    with pytest.raises(ValueError, match="torso"):
        QRDQNConfig(torso="resnet")
    with pytest.raises(ValueError, match="'learning_starts' must be >= .* = 80"):
        QRDQNConfig(num_envs=8, frame_stack=4, n_step=5, learning_starts=0)


def test_atari_preprocessing_and_reward_clipping():
    cfg = QRDQNConfig(env_id="ALE/MsPacman-v5", num_envs=2)
    envs = VectorEnv(cfg)
    obs = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert envs.frames_per_step == 4 and envs.num_actions == 9  # minimal action set
    rng = np.random.default_rng(0)
    rewards = []
    for _ in range(150):
        step = envs.step(rng.integers(0, envs.num_actions, 2))
        rewards.append(step.reward)
    envs.close()
    rewards = np.concatenate(rewards)
    assert step.obs.shape == (2, 4, 84, 84)
    assert rewards.max() >= 10  # the env reports raw scores (pellets are worth 10)
    clipped = clip_reward(rewards, 1.0)
    assert clipped.max() == 1.0 and clipped.min() >= -1.0
    np.testing.assert_array_equal(np.sign(clipped), np.sign(rewards))
    np.testing.assert_array_equal(clip_reward(rewards, 0.0), rewards)


def test_cli_train_eval_plot(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["qrdqn", "train", "--config", str(CARTPOLE), "--total-frames", "800",
                 "--set", "learning_starts=400", "--set", "log_every_steps=400",
                 "--set", "mlp_hidden=[64, 64]",
                 "--out", str(out), "--eval-episodes", "2", "--device", "cpu"])
    assert code == 0
    for name in ("checkpoint.pt", "log.csv", "curve.png", "eval.csv", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 800 and summary["eval_episodes"] == 2
    again = main(["qrdqn", "train", "--config", str(CARTPOLE), "--resume", "--seed", "0",
                  "--set", "total_frames=1000", "--set", "learning_starts=400",
                  "--set", "log_every_steps=400", "--set", "mlp_hidden=[64, 64]",
                  "--out", str(out), "--device", "cpu"])
    assert again == 0  # --set total_frames is not overwritten by the unset --total-frames flag
    assert json.loads((out / "summary.json").read_text())["frames"] == 1000
    assert main(["qrdqn", "eval", "--checkpoint", str(out / "checkpoint.pt"), "--episodes", "3",
                 "--out", str(tmp_path / "e.csv"), "--device", "cpu"]) == 0
    with open(tmp_path / "e.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3
    assert main(["qrdqn", "plot", str(out / "log.csv"), "--out", str(tmp_path / "c.png"),
                 "--reference", "solved=475"]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000
    # Bad input: one clear line, exit code 2.
    assert main(["qrdqn", "train", "--config", str(CARTPOLE), "--set", "gama=0.9",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "gama" in capsys.readouterr().err
    assert main(["qrdqn", "eval", "--checkpoint", str(tmp_path / "none.pt")]) == 2


def test_cartpole_learns_in_5k_steps(tmp_path):
    """The CI-sized learning check: the configs/qrdqn/cartpole.yaml run cut to 5,000 steps, its
    exploration to 2,500 (10 greedy games then score ~260; ~320 with seed 1), then 10 greedy
    games; a random policy scores ~22."""
    cfg = load_config(QRDQNConfig, CARTPOLE, {"total_frames": 5_000, "epsilon_decay_steps": 2_500,
                                              "checkpoint_every_frames": 5_000})
    train(cfg, tmp_path, torch.device("cpu"))
    cfg, net = load_agent(tmp_path / "checkpoint.pt", torch.device("cpu"))
    returns = evaluate(net, cfg, episodes=10, device=torch.device("cpu"), epsilon=0.0)
    assert len(returns) == 10
    assert np.mean(returns) >= 150, returns


@pytest.mark.slow
def test_cartpole_reaches_400(tmp_path):
    """The full configs/qrdqn/cartpole.yaml run (50,000 steps), then 10 greedy games."""
    cfg = load_config(QRDQNConfig, CARTPOLE)
    train(cfg, tmp_path, torch.device("cpu"))
    cfg, net = load_agent(tmp_path / "checkpoint.pt", torch.device("cpu"))
    returns = evaluate(net, cfg, episodes=10, device=torch.device("cpu"), epsilon=0.0)
    assert len(returns) == 10
    assert np.mean(returns) >= 400, returns


@pytest.mark.parametrize(
    "config, env_id, match",
    [
        (CARTPOLE.with_name("atari-paper.yaml"), "ALE/Pongg-v5", "env_id 'ALE/Pongg-v5'"),
        (CARTPOLE, "Foo-v1", "env_id 'Foo-v1'"),
        (CARTPOLE, "Pendulum-v1", "discrete action space"),
    ],
)
def test_bad_env_is_a_clear_error(config, env_id, match):
    cfg = load_config(QRDQNConfig, config, {"env_id": env_id, "num_envs": 1})
    with pytest.raises(ValueError, match=match):
        VectorEnv(cfg)


def test_atari_needs_the_conv_torso():
    with pytest.raises(ValueError, match="needs the 'nature' conv torso"):
        load_config(QRDQNConfig, CARTPOLE, {"env_id": "ALE/Pong-v5"})
