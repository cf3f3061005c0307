"""Quantile PQN: a distributional, replay-free, target-free Q-learner, readable top to bottom.

PQN (Gallici, Fellows, Ellis, Pou, Masmitja, Foerster, Martin, "Simplifying Deep Temporal
Difference Learning", ICLR 2025, arXiv:2407.04811) replaces DQN's replay buffer and target network
by many parallel environments, lambda-returns computed on each fresh rollout and LayerNorm in the
network. This module keeps that loop (purejaxql's ``pqn_gymnax.py`` / ``pqn_atari.py``) and makes
it distributional the QR-DQN way: the network outputs N quantiles per action, and the squared TD
error is replaced by ``wdist.quantile_huber_loss`` against lambda-return quantile targets.

Each rollout: ``num_steps`` epsilon-greedy steps of ``num_envs`` envs with the current network
(no gradient), which also gives at every visited state s_t the sorted quantiles
Z_t = sort(theta(s_t, a*)), a* = argmax_a mean_i theta_i(s_t, a). Then, backwards from the last
step, the lambda-return of every quantile level j:

    G_t^j = r_t + gamma (1 - d_t) [(1 - lambda) Z_{t+1}^j + lambda G_{t+1}^j],

with lambda = 0 at the rollout's last step and where the episode ends (termination, truncation:
the truncated step bootstraps from its final observation; life loss counts as a termination for
learning, as in QR-DQN's Atari protocol). Averaging quantile functions is the 1-D 2-Wasserstein
barycentre, so G_t is the quantile function of the barycentre of the n-step return distributions
with weights (1 - lambda) lambda^(n-1) (sorting Z makes it exact); its mean is PQN's scalar
lambda-return of the mean Q. With N = 1 this is PQN with a Huber instead of a squared loss.
Then ``num_epochs`` passes of ``num_minibatches`` shuffled minibatches: RAdam on the quantile
Huber loss between theta(s_t, a_t) [b, N] and G_t [b, N], gradient norm clipped.

Logged per rollout, named as in purejaxql: ``env_step`` (agent steps), ``update_steps``
(rollouts), ``grad_steps``, ``td_loss`` (the quantile Huber loss), ``qvals`` (mean Q of the taken
actions), ``epsilon``, ``lr``, ``fps``; per finished game: ``episodic_return`` (raw score) and
``episodic_length`` (frames).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import wdist
from wdist_apps.qrdqn.agent import clip_reward
from wdist_apps.qrdqn.envs import VectorEnv
from wdist_apps.qrdqn.networks import QuantileNetwork, greedy_action
from wdist_apps.runtime import (
    CSVLogger,
    check_resumable,
    load_checkpoint,
    progress,
    rng_state,
    save_checkpoint,
    scoped_settings,
    seed_everything,
    set_rng_state,
    stop_on_signal,
)
from wdist_apps.runtime.config import from_dict, to_dict
from wdist_apps.runtime.signals import StopFlag


@dataclass
class PQNConfig:
    """Every quantile-PQN hyper-parameter; purejaxql's name in brackets where it has one.

    Units as in ``QRDQNConfig``: ``*_steps`` count agent steps summed over envs, ``*_frames``
    emulator frames (4 per Atari agent step).
    """

    # --- environment (the same keys and protocol as QRDQNConfig) -------------------------------
    env_id: str = "CartPole-v1"
    num_envs: int = 32  # [NUM_ENVS] parallel environments
    frame_skip: int = 1
    frame_stack: int = 1
    noop_max: int = 30
    repeat_action_probability: float = 0.25
    fire_reset: bool = False
    terminal_on_life_loss: bool = True
    reward_clip: float = 0.0  # clip rewards to [-c, c] for learning; 0 = raw
    reward_scale: float = 0.1  # [REW_SCALE] rewards are multiplied by this for learning
    max_episode_frames: int = 108_000
    # --- network -------------------------------------------------------------------------------
    torso: str = "mlp"  # "mlp" or "nature" (the Nature-DQN convolutions)
    mlp_hidden: list[int] = field(default_factory=lambda: [256, 256])  # [HIDDEN_SIZE, NUM_LAYERS]
    layer_norm: bool = True  # [NORM_TYPE: layer_norm]
    N: int = 32  # quantiles per action
    kappa: float = 1.0  # quantile Huber threshold
    # --- rollouts and optimisation -------------------------------------------------------------
    num_steps: int = 64  # [NUM_STEPS] steps per env in each rollout
    num_epochs: int = 4  # [NUM_EPOCHS] passes over each rollout
    num_minibatches: int = 16  # [NUM_MINIBATCHES] per epoch
    lr: float = 1e-4  # [LR] RAdam step size
    lr_linear_decay: bool = True  # [LR_LINEAR_DECAY] linear to 0 over the run's grad steps
    max_grad_norm: float = 10.0  # [MAX_GRAD_NORM]
    gamma: float = 0.99  # [GAMMA]
    td_lambda: float = 0.95  # [LAMBDA]
    epsilon_start: float = 1.0  # [EPS_START]
    epsilon_final: float = 0.05  # [EPS_FINISH]
    epsilon_decay_steps: int = 100_000  # [EPS_DECAY x total] agent steps of linear decay
    epsilon_eval: float = 0.0  # [EPS_TEST]
    # --- run -----------------------------------------------------------------------------------
    total_frames: int = 500_000  # [TOTAL_TIMESTEPS] (x frame_skip)
    seed: int = 0
    checkpoint_every_frames: int = 10_000_000
    torch_threads: int = 0  # intra-op CPU threads for torch (0 = torch's default)

    def __post_init__(self) -> None:
        positive = ("num_envs", "frame_skip", "frame_stack", "N", "num_steps", "num_epochs",
                    "num_minibatches", "epsilon_decay_steps", "total_frames",
                    "checkpoint_every_frames")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"config key {name!r} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"config key 'lr' must be > 0, got {self.lr}")
        for name in ("gamma", "td_lambda", "epsilon_start", "epsilon_final", "epsilon_eval",
                     "repeat_action_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"config key {name!r} must be in [0, 1], got {value}")
        for name in ("kappa", "max_grad_norm", "reward_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"config key {name!r} must be >= 0, got {getattr(self, name)}")
        if self.torso not in ("nature", "mlp"):
            raise ValueError(f"config key 'torso' must be 'nature' or 'mlp', got {self.torso!r}")
        if self.env_id.startswith("ALE/") and self.torso != "nature":
            raise ValueError(f"config key 'torso': Atari env {self.env_id!r} needs 'nature'")
        if self.num_envs * self.num_steps < self.num_minibatches:
            raise ValueError(
                f"config key 'num_minibatches' ({self.num_minibatches}) exceeds the rollout's "
                f"num_envs * num_steps = {self.num_envs * self.num_steps} transitions")


CHECKPOINT_KEYS = ("agent", "config", "net", "optimizer", "counters")
RESUME_FREE = ("total_frames", "checkpoint_every_frames", "torch_threads", "epsilon_eval")
LOG_FIELDS = ("frames", "env_step", "update_steps", "grad_steps", "episodic_return",
              "episodic_length", "td_loss", "qvals", "epsilon", "lr", "fps")


def epsilon_at(step: int, cfg: PQNConfig) -> float:
    """Linear from epsilon_start to epsilon_final over the first epsilon_decay_steps steps."""
    frac = min(1.0, step / cfg.epsilon_decay_steps)
    return cfg.epsilon_start + frac * (cfg.epsilon_final - cfg.epsilon_start)


def build_network(cfg: PQNConfig, num_actions: int,
                  obs_shape: tuple[int, ...]) -> QuantileNetwork:
    in_shape = (cfg.frame_stack, *obs_shape) if cfg.torso == "nature" else obs_shape
    return QuantileNetwork(num_actions, cfg.N, cfg.torso, in_shape, cfg.mlp_hidden,
                           layer_norm=cfg.layer_norm)


def greedy_quantiles(quantiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy actions ``[B]`` (by the mean) and their sorted quantiles ``[B, N]``."""
    actions = greedy_action(quantiles)
    chosen = quantiles[torch.arange(len(actions), device=quantiles.device), actions]
    return actions, chosen.sort(dim=1).values


def lambda_return_quantiles(rewards: torch.Tensor, dones: torch.Tensor, ends: torch.Tensor,
                            next_quantiles: torch.Tensor, gamma: float,
                            td_lambda: float) -> torch.Tensor:
    """Quantile lambda-returns of a rollout, backwards in time.

    Args:
        rewards: ``[T, E]`` learning rewards r_t.
        dones: ``[T, E]`` 1 where s_{t+1} is terminal for learning (no bootstrap).
        ends: ``[T, E]`` 1 where the episode stops after step t (terminal or truncated): the
            return is not continued into the next step.
        next_quantiles: ``[T, E, N]`` sorted greedy quantiles Z_{t+1} of the state after step t.
    Returns ``[T, E, N]``: G_t = r_t + gamma (1 - d_t) [(1 - l_t) Z_{t+1} + l_t G_{t+1}] with
    l_t = td_lambda, except 0 at t = T - 1 and where ``ends``.
    """
    T = rewards.shape[0]
    returns = torch.empty_like(next_quantiles)
    g = next_quantiles[T - 1]
    for t in reversed(range(T)):
        lam = 0.0 if t == T - 1 else td_lambda * (1.0 - ends[t, :, None])
        g = rewards[t, :, None] + gamma * (1.0 - dones[t, :, None]) * (
            (1.0 - lam) * next_quantiles[t] + lam * g)
        returns[t] = g
    return returns


def _row(**values: Any) -> dict[str, Any]:
    return {k: values.get(k, "") for k in LOG_FIELDS}


def train(cfg: PQNConfig, out_dir: str | Path, device: torch.device, resume: bool = False,
          time_limit_s: float | None = None) -> dict[str, Any]:
    """Train for ``cfg.total_frames`` (or until ``time_limit_s``, checked between rollouts).

    Writes ``out_dir/log.csv`` and ``out_dir/checkpoint.pt`` (every ``checkpoint_every_frames``
    and at the end, and after the rollout under way on SIGINT / SIGTERM, which then raise
    :class:`~wdist_apps.runtime.Interrupted`; ``resume=True`` continues from it, the envs
    restarting). Returns the counters
    (``env_step``, ``update_steps``, ``grad_steps``, ``episodes``, ``frames``), ``wall_s`` and
    ``net``.

    Example::

        cfg = load_config(PQNConfig, "configs/qrdqn/pqn-cartpole.yaml")
        result = train(cfg, "runs/pqn", torch.device("cpu"))
    """
    # no per-minibatch host sync on CUDA (wdist's input checks), restored afterwards
    with scoped_settings(threads=cfg.torch_threads, validation=device.type != "cuda"), \
            stop_on_signal() as stop:
        return _train(cfg, Path(out_dir), device, resume, time_limit_s, stop)


def _train(cfg: PQNConfig, out_dir: Path, device: torch.device, resume: bool,
           time_limit_s: float | None, stop: StopFlag) -> dict[str, Any]:
    ckpt_path = out_dir / "checkpoint.pt"
    start_time = time.monotonic()
    seed_everything(cfg.seed)
    envs = VectorEnv(cfg)
    E, T, A = envs.num_envs, cfg.num_steps, envs.num_actions
    net = build_network(cfg, A, envs.frame_shape).to(device)
    optimizer = torch.optim.RAdam(net.parameters(), lr=cfg.lr, foreach=True)
    rng = np.random.default_rng(cfg.seed)
    shuffle_gen = torch.Generator(device=device)
    shuffle_gen.manual_seed(cfg.seed)
    counters = {"env_step": 0, "update_steps": 0, "grad_steps": 0, "episodes": 0}
    if resume:
        state = load_checkpoint(ckpt_path, map_location=device, require=CHECKPOINT_KEYS,
                                kind="PQN")
        check_resumable(cfg, state["config"], free=RESUME_FREE)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        counters = state["counters"]
        rng.bit_generator.state = state["numpy_rng"]
        shuffle_gen.set_state(state["shuffle_gen"].cpu())
        set_rng_state(state.get("rng", state))

    def checkpoint() -> None:
        save_checkpoint({
            "agent": "pqn", "config": to_dict(cfg), "num_actions": A,
            "obs_shape": envs.frame_shape, "net": net.state_dict(),
            "optimizer": optimizer.state_dict(), "counters": dict(counters),
            "numpy_rng": rng.bit_generator.state, "shuffle_gen": shuffle_gen.get_state(),
            "rng": rng_state(),
        }, ckpt_path)

    fps_per_step = envs.frames_per_step
    steps_per_rollout = E * T
    num_rollouts = cfg.total_frames // fps_per_step // steps_per_rollout
    total_grad_steps = num_rollouts * cfg.num_epochs * cfg.num_minibatches
    ckpt_every = max(1, cfg.checkpoint_every_frames // fps_per_step)
    next_ckpt = (counters["env_step"] // ckpt_every + 1) * ckpt_every
    logger = CSVLogger(out_dir / "log.csv", resume=resume,
                       upto=("frames", counters["env_step"] * fps_per_step),
                       tensorboard="frames")

    obs_dtype = torch.uint8 if envs.is_atari else torch.float32
    obs_buf = torch.empty((T, E, *((cfg.frame_stack,) if envs.is_atari else ()),
                           *envs.frame_shape), dtype=obs_dtype, device=device)
    act_buf = torch.empty((T, E), dtype=torch.long, device=device)
    rew_buf, done_buf, end_buf, valid_buf = (torch.empty((T, E), device=device)
                                             for _ in range(4))
    z_buf = torch.empty((T, E, cfg.N), device=device)  # Z_{t+1}

    obs = envs.reset(seed=cfg.seed + counters["env_step"])
    final = np.zeros(E, dtype=bool)  # obs is a final observation: this step resets that env
    ep_return, ep_length = np.zeros(E), np.zeros(E, dtype=np.int64)
    bar = progress(total=num_rollouts * steps_per_rollout * fps_per_step,
                   initial=counters["env_step"] * fps_per_step, unit="frame", unit_scale=True,
                   desc=f"pqn {cfg.env_id}")
    try:
        obs_t = torch.as_tensor(obs, device=device)
        with torch.no_grad():
            greedy, z = greedy_quantiles(net(obs_t))
        while counters["env_step"] < num_rollouts * steps_per_rollout and not stop.requested:
            if time_limit_s is not None and time.monotonic() - start_time > time_limit_s:
                break
            rollout_start = time.monotonic()
            epsilon = epsilon_at(counters["env_step"], cfg)
            # --- rollout: epsilon-greedy with the current network, no gradient ----------------
            for t in range(T):
                explore = rng.random(E) < epsilon
                actions = np.where(explore, rng.integers(0, A, E), greedy.cpu().numpy())
                step = envs.step(actions)
                obs_buf[t] = obs_t
                act_buf[t] = torch.as_tensor(actions, device=device)
                reward = clip_reward(step.reward, cfg.reward_clip) * cfg.reward_scale
                done = step.terminated | (step.life_lost if cfg.terminal_on_life_loss else False)
                rew_buf[t] = torch.as_tensor(reward, device=device)
                done_buf[t] = torch.as_tensor(done & ~final, device=device)
                end_buf[t] = torch.as_tensor(step.terminated | step.truncated | done,
                                             device=device)
                valid_buf[t] = torch.as_tensor(~final, device=device)
                obs_t = torch.as_tensor(step.obs, device=device)
                with torch.no_grad():
                    greedy, z = greedy_quantiles(net(obs_t))
                z_buf[t] = z
                # raw-score bookkeeping: a game ends on termination or truncation
                ep_return += step.reward
                ep_length += ~final
                final = step.terminated | step.truncated
                counters["env_step"] += E
                for e in np.flatnonzero(final):
                    counters["episodes"] += 1
                    logger.log(_row(frames=counters["env_step"] * fps_per_step,
                                    env_step=counters["env_step"],
                                    episodic_return=ep_return[e],
                                    episodic_length=int(ep_length[e]) * fps_per_step))
                    bar.set_postfix(ret=f"{ep_return[e]:.1f}", refresh=False)
                ep_return[final], ep_length[final] = 0.0, 0
            # --- targets and updates ----------------------------------------------------------
            targets = lambda_return_quantiles(rew_buf, done_buf, end_buf, z_buf, cfg.gamma,
                                              cfg.td_lambda)
            td_loss, qvals, lr = _learn(net, optimizer, cfg, counters, total_grad_steps,
                                        obs_buf, act_buf, targets, valid_buf, shuffle_gen)
            counters["update_steps"] += 1
            with torch.no_grad():  # the updated network acts next
                greedy, z = greedy_quantiles(net(obs_t))
            if not math.isfinite(td_loss):
                raise FloatingPointError(f"td_loss is {td_loss} at env_step "
                                         f"{counters['env_step']}; the last checkpoint is intact")
            frames = counters["env_step"] * fps_per_step
            logger.log(_row(frames=frames, env_step=counters["env_step"],
                            update_steps=counters["update_steps"],
                            grad_steps=counters["grad_steps"], td_loss=td_loss, qvals=qvals,
                            epsilon=epsilon, lr=lr,
                            fps=steps_per_rollout * fps_per_step
                            / max(time.monotonic() - rollout_start, 1e-9)))
            bar.update(steps_per_rollout * fps_per_step)
            if counters["env_step"] >= next_ckpt:
                checkpoint()
                next_ckpt += ckpt_every
    finally:
        bar.close()
        logger.close()
        envs.close()
    checkpoint()
    stop.check(f"at frame {counters['env_step'] * fps_per_step}, checkpoint {ckpt_path}")
    return dict(counters, frames=counters["env_step"] * fps_per_step,
                wall_s=time.monotonic() - start_time, net=net)


def _learn(net: QuantileNetwork, optimizer: torch.optim.Optimizer, cfg: PQNConfig,
           counters: dict[str, int], total_grad_steps: int, obs: torch.Tensor,
           actions: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
           gen: torch.Generator) -> tuple[float, float, float]:
    """``num_epochs`` x ``num_minibatches`` RAdam steps on the rollout's valid transitions (the
    autoreset steps after an episode's end are no transitions). Returns the mean loss, the mean
    Q(s_t, a_t) and the last step size."""
    keep = valid.flatten().nonzero().squeeze(1)
    obs = obs.flatten(0, 1)[keep]
    actions, targets = actions.flatten()[keep], targets.flatten(0, 1)[keep]
    loss_sum = torch.zeros((), device=obs.device)
    q_sum = torch.zeros((), device=obs.device)
    lr = cfg.lr
    for _ in range(cfg.num_epochs):
        order = torch.randperm(len(keep), generator=gen, device=obs.device)
        for idx in order.tensor_split(cfg.num_minibatches):
            if cfg.lr_linear_decay:
                lr = cfg.lr * max(0.0, 1.0 - counters["grad_steps"] / max(1, total_grad_steps))
                for group in optimizer.param_groups:
                    group["lr"] = lr
            quantiles = net(obs[idx])
            pred = quantiles[torch.arange(len(idx), device=obs.device), actions[idx]]
            loss = wdist.quantile_huber_loss(pred, targets[idx], kappa=cfg.kappa)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
            optimizer.step()
            counters["grad_steps"] += 1
            loss_sum += loss.detach()
            q_sum += pred.detach().mean()
    n = cfg.num_epochs * cfg.num_minibatches
    return float(loss_sum) / n, float(q_sum) / n, lr


def load_agent(checkpoint: str | Path,
               device: torch.device) -> tuple[PQNConfig, QuantileNetwork]:
    """The config and the network stored in a PQN checkpoint."""
    state = load_checkpoint(checkpoint, map_location=device, require=CHECKPOINT_KEYS,
                            kind="PQN")
    cfg = from_dict(PQNConfig, state["config"], f"{checkpoint} config")
    net = build_network(cfg, state["num_actions"], tuple(state["obs_shape"])).to(device)
    net.load_state_dict(state["net"])
    return cfg, net.eval()
