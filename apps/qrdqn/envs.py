"""Vectorised environments behind one small interface, with the Atari protocol set explicitly.

Atari goes through ``gymnasium.make_vec("ALE/...")``, i.e. ale-py's native ``AtariVectorEnv``:
the emulators run in C++ threads, which also do the DQN preprocessing. Its defaults are checked
against the protocol of Mnih et al. (2015) / Machado et al. (2018) and every one is set here:

======================  ==============  ===========================================================
ale-py argument         ale-py default  set to
======================  ==============  ===========================================================
frameskip               4               ``frame_skip`` (4): each action repeated for 4 frames
maxpool                 True            True: max over the last two frames (removes flicker)
img_height/img_width    84/84           84/84, ``grayscale`` True
stack_num               4               ``frame_stack`` (4); frames before a reset are zeros
noop_max                30              ``noop_max`` (30): random no-op starts
repeat_action_prob.     0.0             ``repeat_action_probability`` (0.25 = ALE v5 sticky)
use_fire_reset          True            ``fire_reset`` (False: not in the DQN protocol)
reward_clipping         True            False: the env reports raw game scores; the agent clips
                                        rewards for learning only (``reward_clip``)
episodic_life           False           False: an episode is a whole game; a life loss is
                                        detected from ``info["lives"]`` and ends the bootstrap
                                        for learning only (``terminal_on_life_loss``)
life_loss_info          False           False (it would report life losses as terminations)
max_num_frames_per_ep.  108000          ``max_episode_frames`` (108000 = 30 min): truncation
full_action_space       False           False: the game's minimal action set
autoreset_mode          NEXT_STEP       NEXT_STEP: the step after an episode's last one resets
                                        that env (its action is ignored, reward 0)
======================  ==============  ===========================================================

Other gymnasium ids (CartPole-v1, ...) go through ``gymnasium.make_vec`` with the same NEXT_STEP
autoreset, so the agent code is the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wdist_apps.qrdqn.config import QRDQNConfig


@dataclass
class Step:
    """What one vector step returns (arrays of length ``num_envs``)."""

    obs: np.ndarray
    reward: np.ndarray  # raw game reward (float32)
    terminated: np.ndarray  # the game ended
    truncated: np.ndarray  # cut by the time limit
    life_lost: np.ndarray  # a life was lost (Atari); all False elsewhere


def _make_vec(gym, env_id: str, **kwargs):
    """``gymnasium.make_vec`` with gymnasium's errors (unknown id, bad kwargs) as a ValueError."""
    try:
        return gym.make_vec(env_id, **kwargs)
    except gym.error.Error as err:
        raise ValueError(f"env_id {env_id!r}: {err}") from err


class VectorEnv:
    """``num_envs`` copies of one environment, reset and stepped together."""

    def __init__(self, cfg: QRDQNConfig, num_envs: int | None = None):
        import gymnasium as gym

        self.num_envs = num_envs or cfg.num_envs
        self.is_atari = cfg.env_id.startswith("ALE/")
        if self.is_atari:
            import ale_py

            gym.register_envs(ale_py)
            self.env = _make_vec(
                gym,
                cfg.env_id,
                num_envs=self.num_envs,
                vectorization_mode="vector_entry_point",
                frameskip=cfg.frame_skip,
                maxpool=True,
                img_height=84,
                img_width=84,
                grayscale=True,
                stack_num=cfg.frame_stack,
                noop_max=cfg.noop_max,
                repeat_action_probability=cfg.repeat_action_probability,
                use_fire_reset=cfg.fire_reset,
                reward_clipping=False,
                episodic_life=False,
                life_loss_info=False,
                max_num_frames_per_episode=cfg.max_episode_frames,
                full_action_space=False,
                autoreset_mode="NextStep",
            )
            self.frame_shape: tuple[int, ...] = (84, 84)
            self.frames_per_step = cfg.frame_skip
        else:
            if cfg.frame_stack != 1:
                raise ValueError(
                    f"frame_stack must be 1 for non-Atari env {cfg.env_id!r}, got {cfg.frame_stack}"
                )
            self.env = _make_vec(gym, cfg.env_id, num_envs=self.num_envs, vectorization_mode="sync")
            self.frame_shape = tuple(self.env.single_observation_space.shape)
            self.frames_per_step = 1
        mode = self.env.metadata.get("autoreset_mode")
        if mode is not None and getattr(mode, "value", mode) != "NextStep":
            raise ValueError(f"{cfg.env_id}: expected NEXT_STEP autoreset, got {mode}")
        if not isinstance(self.env.single_action_space, gym.spaces.Discrete):
            raise ValueError(
                f"env_id {cfg.env_id!r}: QR-DQN needs a discrete action space, got "
                f"{self.env.single_action_space}"
            )
        self.num_actions = int(self.env.single_action_space.n)
        self._lives: np.ndarray | None = None
        self._actions: np.ndarray | None = None

    def reset(self, seed: int) -> np.ndarray:
        obs, info = self.env.reset(seed=seed)
        self._lives = self._read_lives(info)
        return self._obs(obs)

    def step(self, actions: np.ndarray) -> Step:
        self.send(actions)
        return self.recv()

    def send(self, actions: np.ndarray) -> None:
        """Start stepping with ``actions`` (ale-py's send/recv split; the agent learns between the
        two, so any emulation ale-py leaves to its threads after ``send`` overlaps learning)."""
        if self.is_atari:
            self.env.send(actions)
        else:
            self._actions = actions

    def recv(self) -> Step:
        """Wait for the step started by :meth:`send`."""
        if self.is_atari:
            obs, reward, terminated, truncated, info = self.env.recv()
        else:
            obs, reward, terminated, truncated, info = self.env.step(self._actions)
        lives = self._read_lives(info)
        life_lost = lives < self._lives
        self._lives = lives
        return Step(
            obs=self._obs(obs),
            reward=np.asarray(reward, dtype=np.float32),
            terminated=np.asarray(terminated, dtype=bool),
            truncated=np.asarray(truncated, dtype=bool),
            life_lost=life_lost,
        )

    def newest_frame(self, obs: np.ndarray) -> np.ndarray:
        """The frame each env added at this step: what the replay stores ([E, *frame_shape])."""
        return obs[:, -1] if self.is_atari else obs

    def close(self) -> None:
        self.env.close()

    def _read_lives(self, info: dict[str, Any]) -> np.ndarray:
        if "lives" in info:
            return np.asarray(info["lives"], dtype=np.int64)
        return np.zeros(self.num_envs, dtype=np.int64)

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        return obs if self.is_atari else np.asarray(obs, dtype=np.float32)
