"""Every QR-DQN hyper-parameter in one place, named as in the paper (Dabney et al., AAAI 2018).

Units: ``*_steps`` count agent steps (= transitions, one per env per vector step); an Atari agent
step is ``frame_skip`` = 4 emulator frames. The target-network period counts agent steps too, as the
DQN Lua code, Dopamine and sb3-contrib do (10,000 steps = 40,000 frames = 2,500 updates at one
update per 4 steps). ``total_frames`` counts emulator frames, the unit papers report curves in.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class QRDQNConfig:
    # --- environment -------------------------------------------------------------------------
    env_id: str = "ALE/Pong-v5"
    num_envs: int = 8  # parallel emulators (C++ threads in ale-py's AtariVectorEnv)
    frame_skip: int = 4  # Atari only; CartPole uses 1
    frame_stack: int = 4
    noop_max: int = 30  # no-op starts (Mnih et al. 2015)
    repeat_action_probability: float = 0.25  # sticky actions, ALE v5 (Machado et al. 2018)
    fire_reset: bool = False  # press FIRE after reset (not in the DQN protocol)
    terminal_on_life_loss: bool = True  # life loss ends the bootstrap (learning only)
    reward_clip: float = 1.0  # rewards clipped to [-c, c] for learning only; 0 disables
    max_episode_frames: int = 108_000  # 30 minutes of emulator time
    # --- network -------------------------------------------------------------------------------
    torso: str = "nature"  # "nature" (Nature-DQN conv torso) or "mlp"
    mlp_hidden: list[int] = field(default_factory=lambda: [128, 128])
    N: int = 200  # number of quantiles
    kappa: float = 1.0  # quantile Huber threshold
    # --- optimisation --------------------------------------------------------------------------
    lr: float = 5e-5  # Adam step size alpha
    adam_eps: float = 0.01 / 32  # Adam epsilon, 0.01/32 in the paper
    batch_size: int = 32
    gamma: float = 0.99
    n_step: int = 1  # multi-step returns (1 = the paper)
    max_grad_norm: float = 0.0  # 0 = no clipping (the paper does not clip)
    # --- replay and schedule -------------------------------------------------------------------
    replay_capacity: int = 1_000_000  # transitions
    # transitions collected before the first update (above replay_capacity: acting only, never
    # learning, as benchmarks/qrdqn.py uses it to time acting)
    learning_starts: int = 50_000
    update_period: int = 4  # agent steps per parameter update (replay ratio = batch/period)
    target_update_period_steps: int = 10_000  # agent steps between target-network copies
    epsilon_start: float = 1.0
    epsilon_final: float = 0.01
    # linear epsilon decay over this many agent steps, starting once learning_starts are stored
    # (epsilon_start until then), as in the DQN Lua code and Dopamine
    epsilon_decay_steps: int = 1_000_000
    epsilon_eval: float = 0.001
    # --- run -----------------------------------------------------------------------------------
    total_frames: int = 10_000_000
    seed: int = 0
    log_every_steps: int = 10_000  # agent steps between loss/fps rows in the CSV
    checkpoint_every_frames: int = 1_000_000
    save_replay: bool = False  # put the replay buffer in the checkpoint too (large)
    replay_on_device: bool = True  # keep the replay on the learner's GPU when there is one
    compile: bool = False  # torch.compile the network (measure first; see README)
    # torch.compile the learner step (loss + backward, and the Adam step) with CUDA graphs on CUDA
    # (mode reduce-overhead): for the launch-bound small-CNN update; CPU-tested only so far
    compile_update: bool = False
    amp: bool = False  # bfloat16 autocast for the learner on CUDA
    torch_threads: int = 0  # intra-op CPU threads for torch (0 = torch's default)

    def __post_init__(self) -> None:
        positive = (
            "num_envs", "frame_skip", "frame_stack", "N", "batch_size", "n_step",
            "replay_capacity", "update_period", "target_update_period_steps", "total_frames",
            "log_every_steps", "checkpoint_every_frames",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"config key {name!r} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "adam_eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"config key {name!r} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"config key 'gamma' must be in [0, 1], got {self.gamma}")
        for name in ("epsilon_start", "epsilon_final", "epsilon_eval",
                     "repeat_action_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"config key {name!r} must be in [0, 1], got {value}")
        if self.kappa < 0:
            raise ValueError(f"config key 'kappa' must be >= 0, got {self.kappa}")
        if self.torso not in ("nature", "mlp"):
            raise ValueError(f"config key 'torso' must be 'nature' or 'mlp', got {self.torso!r}")
        if self.env_id.startswith("ALE/") and self.torso != "nature":
            raise ValueError(
                f"config key 'torso': Atari env {self.env_id!r} needs the 'nature' conv torso on "
                f"84x84 frames, got {self.torso!r}"
            )
        window = self.num_envs * (self.frame_stack + self.n_step + 1)  # the fewest to sample from
        if self.replay_capacity < window:
            raise ValueError(
                f"config key 'replay_capacity' ({self.replay_capacity}) is too small for "
                f"{self.num_envs} envs"
            )
        if self.learning_starts < window:
            raise ValueError(
                f"config key 'learning_starts' must be >= num_envs * (frame_stack + n_step + 1) "
                f"= {window} (the fewest transitions a batch can be sampled from), "
                f"got {self.learning_starts}"
            )
