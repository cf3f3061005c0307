"""Every hyper-parameter of a WGAN run, in one place, with each Lipschitz method's paper defaults.

Fields left ``None`` (``n_critic``, ``lr``, ``betas``) take the default of the chosen method:

========  ==========================================  ========================================
method    optimiser (critic and generator)             source
========  ==========================================  ========================================
clip      RMSProp lr 5e-5, clip c = 0.01, n_critic 5   Arjovsky et al. 2017, Algorithm 1
gp        Adam lr 1e-4, betas (0, 0.9), lambda 10,      Gulrajani et al. 2017, Algorithm 1
          n_critic 5
sn        Adam lr 2e-4, betas (0.5, 0.999), n_dis 1     Miyato et al. 2018, Table 1 setting C
========  ==========================================  ========================================

The critic's normalisation (``critic_norm: auto``) follows each paper too: batch norm for the
clipped DCGAN critic (Arjovsky et al.), layer norm for GP (batch norm invalidates a per-sample
gradient penalty), none for SN (Miyato et al.'s critics have no normalisation layer).
"""

from __future__ import annotations

from dataclasses import dataclass

from wdist_apps.wgan.data import IMAGE_SETS, TOY_SETS
from wdist_apps.wgan.models import ARCHS, NORMS

LIPSCHITZ = ("clip", "gp", "sn")


@dataclass(frozen=True)
class MethodDefaults:
    optimizer: str
    lr: float
    betas: tuple[float, float] | None
    n_critic: int
    critic_norm: str


PAPER_DEFAULTS = {
    "clip": MethodDefaults("rmsprop", 5e-5, None, 5, "batch"),
    "gp": MethodDefaults("adam", 1e-4, (0.0, 0.9), 5, "layer"),
    "sn": MethodDefaults("adam", 2e-4, (0.5, 0.999), 1, "none"),
}


@dataclass
class WGANConfig:
    """A WGAN experiment (YAML keys = these fields; see apps/wgan/README.md)."""

    data: str = "8gaussians"  # a toy set, mnist, digits, an image folder or a .npz file
    lipschitz: str = "gp"  # clip | gp | sn
    arch: str = "mlp"  # mlp | dcgan | resnet
    image_size: int = 32  # images are resized + centre-cropped to this (dcgan: 28, 32 or 64)
    channels: int = 1  # 1 = grayscale, 3 = RGB (image folders; mnist/digits are grayscale)
    z_dim: int = 2  # noise dimension
    width: int = 512  # MLP hidden units / base conv channels
    critic_norm: str = "auto"  # auto (per method, see above) | batch | layer | none
    batch_size: int = 256
    steps: int = 2000  # generator iterations
    n_critic: int | None = None  # critic updates per generator update (None: method default)
    lr: float | None = None  # None: method default
    betas: list[float] | None = None  # Adam betas (None: method default)
    lam: float = 10.0  # gradient-penalty weight
    clip_value: float = 0.01  # weight-clipping bound c
    hflip: bool = False  # mirror each real image left-right with probability 1/2
    workers: int = 2  # DataLoader worker processes decoding an image folder (0: main process)
    ema: bool = True  # keep an EMA copy of the generator (used for samples and evaluation)
    ema_decay: float = 0.999  # with warm-up: decay_t = min(ema_decay, (1 + t) / (10 + t))
    seed: int = 0
    log_every: int = 50  # CSV row (and, on toy data, exact W1) every this many steps
    sample_every: int = 500  # sample grid / toy figure every this many steps
    checkpoint_every: int = 500
    eval_samples: int = 1000  # samples for exact W1 (toys) or the Fréchet distance (images)
    out_dir: str = "runs/wgan/default"

    def __post_init__(self) -> None:
        if self.lipschitz not in LIPSCHITZ:
            raise ValueError(f"lipschitz must be one of {LIPSCHITZ}, got {self.lipschitz!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.critic_norm not in ("auto",) + NORMS:
            raise ValueError(
                f"critic_norm must be auto or one of {NORMS}, got {self.critic_norm!r}"
            )
        if self.is_toy and self.arch != "mlp":
            raise ValueError(f"toy data {self.data!r} needs arch 'mlp', got {self.arch!r}")
        if self.arch == "mlp" and self.critic_norm in ("batch", "layer"):
            raise ValueError(f"critic_norm {self.critic_norm!r} has no effect with arch 'mlp' "
                             "(its critic has no normalisation layer); use auto or none")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        for name in ("z_dim", "width", "batch_size", "steps", "log_every", "sample_every",
                     "checkpoint_every", "eval_samples", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.n_critic is not None and self.n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {self.n_critic}")
        if self.betas is not None and len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {self.betas}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.lipschitz == "gp" and self.resolved_critic_norm == "batch":
            raise ValueError("critic_norm 'batch' is invalid with lipschitz 'gp' (use 'layer')")
        if self.lipschitz == "sn" and self.resolved_critic_norm != "none":
            raise ValueError(
                f"critic_norm {self.critic_norm!r} is invalid with lipschitz 'sn': spectral "
                "normalisation bounds the conv/linear layers only, and a batch/layer norm's "
                "rescaling is not bounded by it (use 'none' or 'auto')")

    @property
    def is_toy(self) -> bool:
        return self.data in TOY_SETS

    @property
    def is_builtin_images(self) -> bool:
        return self.data in IMAGE_SETS

    @property
    def defaults(self) -> MethodDefaults:
        return PAPER_DEFAULTS[self.lipschitz]

    @property
    def resolved_n_critic(self) -> int:
        return self.n_critic if self.n_critic is not None else self.defaults.n_critic

    @property
    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else self.defaults.lr

    @property
    def resolved_betas(self) -> tuple[float, float] | None:
        return tuple(self.betas) if self.betas is not None else self.defaults.betas

    @property
    def resolved_critic_norm(self) -> str:
        if self.critic_norm != "auto":
            return self.critic_norm
        return self.defaults.critic_norm if self.arch != "mlp" else "none"
