"""Replay memory that stores each frame once and rebuilds frame stacks when it samples.

Layout: one row per vector step, one column per env, so each env keeps its own time line:
``frames[t, e]`` is the newest frame of env ``e``'s observation at row ``t`` (84x84 uint8 for Atari,
so 1M transitions take 7 GB instead of 56 GB with stacked observations and next observations).
Per row and env it also keeps the action taken, the (clipped) reward, ``done`` (the step ended the
bootstrap: game over or, for learning, a life loss), ``first`` (this observation starts an episode:
the frames before it in the stack are zeros, exactly as the env shows them) and ``valid`` (an action
was really taken here; False for an episode's final observation, whose next step is the env's
automatic reset).

Sampling draws (row, env) pairs uniformly among valid rows with a full ``n_step`` window after them
and returns stacked observations, the n-step discounted return, the bootstrap discount
(``gamma**m``, 0 after a terminal) and the stacked observation ``m`` steps later, ``m <= n_step``
(shorter when the episode ended or was truncated inside the window).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    obs: torch.Tensor  # [B, stack, *frame] (stack dim squeezed when stack == 1)
    actions: torch.Tensor  # [B] int64
    returns: torch.Tensor  # [B] n-step discounted return of clipped rewards
    discounts: torch.Tensor  # [B] gamma**m, 0 when the window hit a terminal
    next_obs: torch.Tensor  # [B, stack, *frame]


class ReplayBuffer:
    """Circular replay of ``capacity`` transitions from ``num_envs`` envs stepped in lock-step."""

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        frame_shape: tuple[int, ...],
        frame_dtype: torch.dtype,
        stack: int,
        n_step: int = 1,
        gamma: float = 0.99,
        device: torch.device | str = "cpu",
    ) -> None:
        self.rows = capacity // num_envs
        if self.rows < stack + n_step + 1:
            raise ValueError(
                f"capacity={capacity} gives {self.rows} rows per env; need >= {stack + n_step + 1}"
            )
        self.num_envs, self.stack, self.n_step, self.gamma = num_envs, stack, n_step, gamma
        self.device = torch.device(device)
        # gamma^k, k = 0..n_step, by repeated products (as a step-by-step loop would compute them)
        self._powers = torch.cumprod(
            torch.tensor([1.0] + [gamma] * n_step, dtype=torch.float32), 0).to(self.device)
        self._back = torch.arange(stack, device=self.device)  # k frames back, newest first
        self._ahead = torch.arange(n_step, device=self.device)
        shape = (self.rows, num_envs)
        self.frames = torch.zeros(shape + tuple(frame_shape), dtype=frame_dtype, device=self.device)
        self.actions = torch.zeros(shape, dtype=torch.int64, device=self.device)
        self.rewards = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self.dones = torch.zeros(shape, dtype=torch.bool, device=self.device)
        self.firsts = torch.zeros(shape, dtype=torch.bool, device=self.device)
        self.valids = torch.zeros(shape, dtype=torch.bool, device=self.device)
        self.pos = 0  # next row to write
        self.size = 0  # rows written, <= self.rows

    def __len__(self) -> int:
        """Number of stored transitions (rows x envs)."""
        return self.size * self.num_envs

    def add(self, frame, action, reward, done, first, valid) -> None:
        """Write one row: the newest frame of each env's current observation and what followed."""
        t = self.pos
        self.frames[t] = torch.as_tensor(frame, device=self.device)
        self.actions[t] = torch.as_tensor(action, device=self.device)
        self.rewards[t] = torch.as_tensor(reward, device=self.device)
        self.dones[t] = torch.as_tensor(done, device=self.device)
        self.firsts[t] = torch.as_tensor(first, device=self.device)
        self.valids[t] = torch.as_tensor(valid, device=self.device)
        self.pos = (t + 1) % self.rows
        self.size = min(self.size + 1, self.rows)

    def _row(self, logical: torch.Tensor) -> torch.Tensor:
        """Physical row of logical index ``logical`` (0 = oldest row still stored)."""
        return (self.pos - self.size + logical) % self.rows

    def stacked(self, logical: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
        """Observation at (logical row, env) rebuilt from ``stack`` frames, zeros before a reset.

        One gather for all ``stack`` frames: frame ``k`` back is zeroed once an episode start
        lies among the ``k`` newer rows (an exclusive cumulative OR of ``first``)."""
        rows = self._row(logical.unsqueeze(-1) - self._back)  # [B, stack], newest first
        env = env.unsqueeze(-1)
        frames = self.frames[rows, env]  # [B, stack, *frame]
        if self.stack == 1:
            return frames[:, 0]
        starts = self.firsts[rows, env].to(torch.int32)
        keep = (starts.cumsum(-1) - starts) == 0  # no episode start in the newer rows
        frames = frames * keep.view(*keep.shape, *([1] * (frames.dim() - 2))).to(frames.dtype)
        return frames.flip(1)  # oldest first, as the env stacks them

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """Uniform sample of ``batch_size`` n-step transitions (needs a few stored rows)."""
        low, high = self.stack - 1, self.size - 1 - self.n_step  # logical range, inclusive
        if high < low:
            raise ValueError(f"replay holds {len(self)} transitions: too few to sample from")
        # Rejection sampling without a host sync: draw 2B + 64 candidates and keep the first B
        # valid ones (i.i.d. uniform over valid rows). Final observations are at most one row in
        # 9 even in CartPole's shortest episodes, so running short has probability < 1e-15 for
        # any B (binomial tail); on CPU it is checked anyway, for free.
        n = 2 * batch_size + 64
        cand = torch.randint(low, high + 1, (n,), generator=generator, device=self.device)
        cenv = torch.randint(0, self.num_envs, (n,), generator=generator, device=self.device)
        ok = self.valids[self._row(cand), cenv]
        keep = torch.argsort((~ok).to(torch.int8), stable=True)[:batch_size]
        logical, env = cand[keep], cenv[keep]
        if self.device.type == "cpu" and not bool(ok[keep].all()):
            raise RuntimeError("too few valid transitions in the replay to sample from")
        # The n-step window, vectorised: step j counts while no earlier step ended the bootstrap
        # (a terminal) or reached an episode's final observation (the next row is not valid).
        ahead = logical.unsqueeze(-1) + self._ahead  # [B, n]
        rows, env2 = self._row(ahead), env.unsqueeze(-1)
        rewards, ended = self.rewards[rows, env2], self.dones[rows, env2]
        stop = (ended | ~self.valids[self._row(ahead + 1), env2]).to(torch.int32)
        alive = (stop.cumsum(-1) - stop) == 0  # [B, n]: step j is inside the window
        powers = self._powers[:-1]
        returns = (alive * powers * rewards).sum(-1)
        steps = alive.sum(-1)
        discounts = torch.where((alive & ended).any(-1), 0.0, self._powers[steps])
        return Batch(
            obs=self.stacked(logical, env),
            actions=self.actions[rows[:, 0], env],
            returns=returns,
            discounts=discounts,
            next_obs=self.stacked(logical + steps, env),
        )

    def end_episodes(self) -> None:
        """Make the newest row every env's final observation: what followed it is unknown (the
        envs restart when a run resumes), so no transition starts there or looks past it."""
        if self.size:
            self.valids[(self.pos - 1) % self.rows] = False

    def state_dict(self) -> dict:
        names = ("frames", "actions", "rewards", "dones", "firsts", "valids")
        state = {k: getattr(self, k).cpu() for k in names}
        state.update(pos=self.pos, size=self.size)
        return state

    def load_state_dict(self, state: dict) -> None:
        for k in ("frames", "actions", "rewards", "dones", "firsts", "valids"):
            getattr(self, k).copy_(state[k])
        self.pos, self.size = int(state["pos"]), int(state["size"])
