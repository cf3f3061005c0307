"""QR-DQN (Dabney, Rowland, Bellemare, Munos, AAAI 2018), readable top to bottom.

The return distribution of each action is N Diracs theta_1..theta_N at the quantile midpoints
tau_hat_i = (2i + 1) / (2N). The target of a transition (s, a, r, s') is the N samples
T theta_j = r + gamma * theta'_j(s', a*),  a* = argmax_a' (1/N) sum_j theta'_j(s', a')
from the target network theta', and theta(s, a) is fitted to it by the quantile Huber loss (eq. 10),
``wdist.quantile_huber_loss``: minimising it moves theta towards the quantiles of the target,
i.e. the projection that minimises the 1-Wasserstein distance. With ``n_step`` > 1 the reward is
the n-step discounted sum and gamma becomes gamma**m (m <= n, cut at episode ends).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import wdist
from wdist_apps.qrdqn.config import QRDQNConfig
from wdist_apps.qrdqn.envs import VectorEnv
from wdist_apps.qrdqn.networks import QuantileNetwork, greedy_action
from wdist_apps.qrdqn.replay import Batch, ReplayBuffer
from wdist_apps.runtime import (
    CSVLogger,
    check_resumable,
    distributed,
    load_checkpoint,
    progress,
    rng_state,
    save_checkpoint,
    scoped_settings,
    seed_everything,
    set_rng_state,
    stop_on_signal,
)
from wdist_apps.runtime.config import to_dict
from wdist_apps.runtime.signals import StopFlag

CHECKPOINT_KEYS = ("config", "net", "target_net", "optimizer", "counters")
# config keys a --resume may change: budgets, logging, and how (not what) the learner computes
RESUME_FREE = ("total_frames", "log_every_steps", "checkpoint_every_frames", "save_replay",
               "replay_on_device", "compile", "compile_update", "amp", "torch_threads",
               "epsilon_eval")
LOG_FIELDS = ("frames", "updates", "episodic_return", "episodic_length", "loss", "q_mean",
              "epsilon", "fps")


def _row(**values: Any) -> dict[str, Any]:
    """A CSV row with every column of LOG_FIELDS (blank where this row has nothing)."""
    return {k: values.get(k, "") for k in LOG_FIELDS}


def clip_reward(reward: np.ndarray, clip: float) -> np.ndarray:
    """Rewards for learning: clipped to [-clip, clip] (DQN's sign-like clipping); 0 = raw."""
    return np.clip(reward, -clip, clip) if clip > 0 else reward


def epsilon_at(step: int, cfg: QRDQNConfig) -> float:
    """epsilon_start for the first learning_starts agent steps, then a linear decay to
    epsilon_final over epsilon_decay_steps (Dopamine's ``linearly_decaying_epsilon`` with
    warm-up = learning_starts; the DQN Lua code's ``ep_endt`` after ``learn_start``)."""
    frac = min(1.0, max(0, step - cfg.learning_starts) / max(1, cfg.epsilon_decay_steps))
    return cfg.epsilon_start + frac * (cfg.epsilon_final - cfg.epsilon_start)


def crosses_target_sync(steps_done: int, num_envs: int, period_steps: int) -> bool:
    """Whether this vector step (agent steps ``steps_done + 1 .. steps_done + num_envs``) reaches
    a multiple of ``period_steps``: the target copy every ``target_update_period_steps`` agent
    steps, counted in agent steps whatever the number of envs."""
    return (steps_done + num_envs) // period_steps > steps_done // period_steps


def build_network(cfg: QRDQNConfig, num_actions: int,
                  obs_shape: tuple[int, ...]) -> QuantileNetwork:
    in_shape = (cfg.frame_stack, *obs_shape) if cfg.torso == "nature" else obs_shape
    return QuantileNetwork(num_actions, cfg.N, cfg.torso, in_shape, cfg.mlp_hidden)


def quantile_targets(target_net: QuantileNetwork, batch: Batch) -> torch.Tensor:
    """T theta_j = R + discount * theta'_j(s', a*), a* greedy by the mean of theta'. [B, N]."""
    with torch.no_grad():
        next_quantiles = target_net(batch.next_obs).float()  # [B, A, N]
        a_star = greedy_action(next_quantiles)
        chosen = next_quantiles[torch.arange(len(a_star), device=a_star.device), a_star]
        return batch.returns[:, None] + batch.discounts[:, None] * chosen


def td_loss(net: QuantileNetwork, target_net: QuantileNetwork, batch: Batch,
            kappa: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantile Huber loss between theta(s, a) and the detached target; also mean Q(s, a)."""
    target = quantile_targets(target_net, batch)
    quantiles = net(batch.obs).float()
    pred = quantiles[torch.arange(len(batch.actions), device=quantiles.device), batch.actions]
    return wdist.quantile_huber_loss(pred, target, kappa=kappa), pred.detach().mean()


def make_replay(cfg: QRDQNConfig, envs: VectorEnv, device: torch.device) -> ReplayBuffer:
    replay_device = device if cfg.replay_on_device else torch.device("cpu")
    return ReplayBuffer(
        cfg.replay_capacity, envs.num_envs, envs.frame_shape,
        torch.uint8 if envs.is_atari else torch.float32,
        cfg.frame_stack, cfg.n_step, cfg.gamma, replay_device,
    )


def train(cfg: QRDQNConfig, out_dir: str | Path, device: torch.device, resume: bool = False,
          time_limit_s: float | None = None) -> dict[str, Any]:
    """Train for ``cfg.total_frames`` (or until ``time_limit_s``).

    Returns the counters (steps, updates, episodes, frames), ``wall_s`` and ``net``, the trained
    online network.

    Writes ``out_dir/log.csv`` (one row per finished episode and every ``log_every_steps``) and
    ``out_dir/checkpoint.pt`` (atomically, every ``checkpoint_every_frames`` and at the end).
    On SIGINT / SIGTERM the vector step under way finishes, the checkpoint is written and
    :class:`~wdist_apps.runtime.Interrupted` is raised.
    """
    # wdist's NaN/inf input checks cost a device sync per update on CUDA; the loss logged every
    # log_every_steps is checked instead (FloatingPointError, last checkpoint intact).
    with scoped_settings(threads=cfg.torch_threads, validation=device.type != "cuda",
                         cuda_fast_math=device.type == "cuda"), stop_on_signal() as stop:
        return _train(cfg, Path(out_dir), device, resume, time_limit_s, stop)


def _train(cfg: QRDQNConfig, out_dir: Path, device: torch.device, resume: bool,
           time_limit_s: float | None, stop: StopFlag) -> dict[str, Any]:
    ckpt_path = out_dir / "checkpoint.pt"
    start_time = time.monotonic()
    seed_everything(cfg.seed)
    envs = VectorEnv(cfg)
    E, A = envs.num_envs, envs.num_actions
    net = build_network(cfg, A, envs.frame_shape).to(device)
    target_net = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
    replay = make_replay(cfg, envs, device)
    # under torchrun: the same network on every rank (seeded above), its own envs, exploration,
    # replay and samples per rank, every update's gradients averaged over the ranks
    own_seed = distributed.rank_seed(cfg.seed)
    sample_gen = torch.Generator(device=replay.device)
    sample_gen.manual_seed(own_seed)
    rng = np.random.default_rng(own_seed)
    counters = {"steps": 0, "updates": 0, "episodes": 0}

    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path, map_location=device, require=CHECKPOINT_KEYS,
                                kind="QR-DQN")
        check_resumable(cfg, state["config"], free=RESUME_FREE)
        net.load_state_dict(state["net"])
        target_net.load_state_dict(state["target_net"])
        optimizer.load_state_dict(state["optimizer"])
        counters = state["counters"]
        rng.bit_generator.state = distributed.own(state["numpy_rng"])
        sample_gen.set_state(distributed.own(state["sample_gen"]).cpu())
        set_rng_state(state.get("rng", state))
        if state.get("replay") is not None:
            replay.load_state_dict(state["replay"])
            replay.end_episodes()  # the envs restart below
    elif resume:
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")

    def checkpoint() -> None:
        save_checkpoint({
            "config": to_dict(cfg), "num_actions": A, "obs_shape": envs.frame_shape,
            "net": net.state_dict(), "target_net": target_net.state_dict(),
            "optimizer": optimizer.state_dict(), "counters": dict(counters),
            "numpy_rng": distributed.gather(rng.bit_generator.state),
            "sample_gen": distributed.gather(sample_gen.get_state()), "rng": rng_state(),
            # under torchrun each rank refills its own replay after a resume
            "replay": (replay.state_dict() if cfg.save_replay
                       and not distributed.is_distributed() else None),
        }, ckpt_path)

    policy = torch.compile(net) if cfg.compile else net
    update_fn = _make_update(net, target_net, optimizer, cfg, device)
    logger = CSVLogger(out_dir / "log.csv", resume=resume,
                       upto=("frames", counters["steps"] * envs.frames_per_step),
                       tensorboard="frames")
    fps_per_step = envs.frames_per_step
    total_steps = cfg.total_frames // fps_per_step
    ckpt_every_steps = max(1, cfg.checkpoint_every_frames // fps_per_step)
    next_ckpt = (counters["steps"] // ckpt_every_steps + 1) * ckpt_every_steps
    next_log = (counters["steps"] // cfg.log_every_steps + 1) * cfg.log_every_steps

    obs = envs.reset(seed=own_seed + counters["steps"])
    first = np.ones(E, dtype=bool)  # the observation starts an episode
    final = np.zeros(E, dtype=bool)  # the observation ends one: the env resets on the next step
    ep_return = np.zeros(E)
    ep_length = np.zeros(E, dtype=np.int64)
    pending_updates = 0.0
    loss_sum, q_sum, n_losses = torch.zeros((), device=device), torch.zeros((), device=device), 0
    last_time, last_steps = time.monotonic(), counters["steps"]
    bar = progress(total=total_steps * fps_per_step, initial=counters["steps"] * fps_per_step,
                   unit="frame", unit_scale=True, desc=f"qrdqn {cfg.env_id}")
    try:
        while counters["steps"] < total_steps:
            out_of_time = (time_limit_s is not None
                           and time.monotonic() - start_time > time_limit_s)
            if distributed.any_rank(stop.requested or out_of_time):  # all ranks stop together
                break
            # --- act: epsilon-greedy on the mean of the quantiles --------------------------------
            epsilon = epsilon_at(counters["steps"], cfg)
            with torch.no_grad():
                greedy = greedy_action(policy(torch.as_tensor(obs, device=device)))
            actions = np.where(rng.random(E) < epsilon, rng.integers(0, A, E),
                               greedy.cpu().numpy())
            envs.send(actions)
            # --- learn between send and recv: update_period agent steps per update ----------
            if len(replay) >= cfg.learning_starts:
                pending_updates += E / cfg.update_period
                while pending_updates >= 1.0:
                    pending_updates -= 1.0
                    loss, q_mean = update_fn(replay.sample(cfg.batch_size, sample_gen))
                    loss_sum += loss
                    q_sum += q_mean
                    n_losses += 1
                    counters["updates"] += 1
                if crosses_target_sync(counters["steps"], E, cfg.target_update_period_steps):
                    target_net.load_state_dict(net.state_dict())
            step = envs.recv()
            # --- store: one frame per env; rewards clipped and life losses terminal for learning -
            reward = clip_reward(step.reward, cfg.reward_clip)
            done = step.terminated | (step.life_lost if cfg.terminal_on_life_loss else False)
            replay.add(envs.newest_frame(obs), actions, np.where(final, 0.0, reward),
                       done & ~final, first, ~final)
            first, final = final, step.terminated | step.truncated
            obs = step.obs
            counters["steps"] += E
            # --- episode bookkeeping (raw game score) ---------------------------------------------
            ep_return += step.reward
            ep_length += ~first
            frames = counters["steps"] * fps_per_step
            for e in np.flatnonzero(final):
                counters["episodes"] += 1
                logger.log(_row(frames=frames, updates=counters["updates"],
                                episodic_return=ep_return[e],
                                episodic_length=int(ep_length[e]) * fps_per_step))
                bar.set_postfix(ret=f"{ep_return[e]:.1f}", refresh=False)
            ep_return[final] = 0.0
            ep_length[final] = 0
            bar.update(E * fps_per_step)
            # --- log and checkpoint -------------------------------------------------------------
            if counters["steps"] >= next_log:
                now = time.monotonic()
                fps = (counters["steps"] - last_steps) * fps_per_step / max(now - last_time, 1e-9)
                last_time, last_steps = now, counters["steps"]
                mean_loss = float(loss_sum) / n_losses if n_losses else 0.0
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(
                        f"loss is {mean_loss} at frame {frames}; the last checkpoint is intact")
                logger.log(_row(frames=frames, updates=counters["updates"],
                                loss=mean_loss if n_losses else "",
                                q_mean=float(q_sum) / n_losses if n_losses else "",
                                epsilon=epsilon, fps=fps))
                loss_sum.zero_(), q_sum.zero_()
                n_losses = 0
                next_log += cfg.log_every_steps
            if counters["steps"] >= next_ckpt:
                checkpoint()
                next_ckpt += ckpt_every_steps
    finally:
        bar.close()
        logger.close()
        envs.close()
    checkpoint()
    stop.check(f"at frame {counters['steps'] * fps_per_step}, checkpoint {ckpt_path}")
    return dict(counters, frames=counters["steps"] * fps_per_step,
                wall_s=time.monotonic() - start_time, net=net)


def _make_update(net: QuantileNetwork, target_net: QuantileNetwork,
                 optimizer: torch.optim.Optimizer, cfg: QRDQNConfig, device: torch.device):
    """One Adam step on the quantile Huber loss of a sampled batch (optional bf16 autocast).

    ``cfg.compile_update``: the loss (forward and, through AOTAutograd, backward) and the Adam
    step are ``torch.compile``d, with CUDA graphs on CUDA (``mode="reduce-overhead"``): the
    Nature-CNN update at batch 256 is a few hundred small kernels, bound by launch overhead.
    """
    use_amp = cfg.amp and device.type == "cuda"

    def loss_of(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            return td_loss(net, target_net, batch, cfg.kappa)

    def adam_step() -> None:
        optimizer.step()

    if cfg.compile_update:
        mode = "reduce-overhead" if device.type == "cuda" else None
        loss_of = torch.compile(loss_of, mode=mode)
        adam_step = torch.compile(adam_step, mode=mode)

    def update(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        batch = Batch(*(t.to(device, non_blocking=True) for t in
                        (batch.obs, batch.actions, batch.returns, batch.discounts, batch.next_obs)))
        loss, q_mean = loss_of(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_grads(net.parameters())
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        adam_step()
        return loss.detach().clone(), q_mean.clone()  # CUDA-graph outputs are reused next step

    return update
