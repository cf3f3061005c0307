"""The WGAN training loop (Arjovsky et al. 2017, Algorithm 1), with the critic from ``wdist``.

Per generator iteration::

    for _ in range(n_critic):                  # critic: maximise E f(real) - E f(G(z))
        critic.step(real_batch, G(z).detach())   # wdist.WassersteinCritic: loss, Lipschitz, opt
    loss_G = wdist.generator_loss(critic.module, G(z))   # = -E f(G(z))
    generator_optimizer.step(); ema.update(G)

Everything else here is bookkeeping: data, logging, samples, evaluation, checkpoints, resume.
A run directory holds ``config.yaml``, ``log.csv``, ``samples/``, ``checkpoint.pt`` and
``metrics.json``.

Under torchrun (see :mod:`wdist_apps.runtime.distributed`) the critic and the generator train in
DistributedDataParallel: ``batch_size`` is the global batch, each rank draws its shard from its
own data and noise streams, every critic loss has a plain forward next to the gradient penalty
(so DDP all-reduces the penalty's gradients too), and rank 0 alone evaluates and writes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path

import torch

import wdist
from wdist_apps.runtime import (
    CSVLogger,
    check_resumable,
    distributed,
    load_checkpoint,
    progress,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    snapshot_config,
    stop_on_signal,
)
from wdist_apps.wgan.config import WGANConfig
from wdist_apps.wgan.data import load_images, sample_toy
from wdist_apps.wgan.ema import EMA
from wdist_apps.wgan.evaluate import exact_w1, generate, image_metrics
from wdist_apps.wgan.features import FeatureExtractor
from wdist_apps.wgan.folder import FolderBatches, ImageFolder, to_unit
from wdist_apps.wgan.models import build_models
from wdist_apps.wgan.plots import save_grid, save_toy_figure

LOG_COLUMNS = ("step", "critic_loss", "w1_estimate", "gp", "grad_norm", "generator_loss",
               "img_per_s", "w1_exact", "w1_critic", "fd", "time_s")
N_GRID = 64
DIGIT_SHAPES = ((1, 28, 28), (1, 32, 32))  # scored by the shipped digit classifier by default
# what sample/eval read from a checkpoint (load_state_dict's keys and the data shape)
CHECKPOINT_KEYS = ("config", "step", "generator", "critic", "g_optimizer", "ema", "data_rng",
                   "shape")


def _scalars(metrics: dict) -> dict:
    """The one-number metrics (a log row's cells; the class histogram goes to metrics.json)."""
    return {k: v for k, v in metrics.items() if not isinstance(v, list | tuple)}


def make_optimizer(cfg: WGANConfig, params) -> torch.optim.Optimizer:
    """The method's paper optimiser (used for both the critic and the generator)."""
    if cfg.defaults.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.resolved_lr)
    return torch.optim.Adam(params, lr=cfg.resolved_lr, betas=cfg.resolved_betas)


class Trainer:
    """Builds models, data and optimisers from a :class:`WGANConfig` and runs/resumes training.

    ``features`` (images only): path to a TorchScript or state-dict feature extractor for the
    Fréchet distance; by default the shipped digit classifier is used for 1x32x32 images.
    ``shape`` (images, e.g. a checkpoint's): build the models for it without loading the
    training images, for sampling only (no training, no :meth:`evaluate`).
    """

    def __init__(self, cfg: WGANConfig, device: torch.device | str = "cpu",
                 features: str | Path | None = None, shape: tuple[int, ...] | None = None):
        self.cfg = cfg
        self.device = torch.device(device)
        self.floor_real: torch.Tensor | None = None
        self._fd_floor: float | None = None
        self.run_dir = Path(cfg.out_dir)
        seed_everything(cfg.seed)
        self.data_rng = torch.Generator().manual_seed(distributed.rank_seed(cfg.seed))
        eval_rng = torch.Generator().manual_seed(cfg.seed + 10_000)
        self.folder: ImageFolder | None = None
        self.batches: FolderBatches | None = None  # made on first use (after a resume's step)
        if cfg.is_toy:
            self.images = None
            self.shape: tuple[int, ...] = (2,)
            self.eval_real = sample_toy(cfg.data, cfg.eval_samples, eval_rng)
        elif shape is not None:
            self.images = self.eval_real = None
            self.shape = tuple(shape)
        elif Path(cfg.data).is_dir():  # decoded lazily, one batch at a time
            self.images = self.eval_real = None
            self.folder = ImageFolder(cfg.data, cfg.image_size, cfg.channels)
            self.shape = (cfg.channels, cfg.image_size, cfg.image_size)
            if features is not None or self.shape in DIGIT_SHAPES:
                self._folder_eval_sets(eval_rng)
        else:
            self.images = load_images(cfg.data, cfg.image_size, cfg.channels).to(self.device)
            self.shape = tuple(self.images.shape[1:])
            perm = torch.randperm(len(self.images), generator=eval_rng)
            n = cfg.eval_samples
            self.eval_real = self.images[perm[:n].to(self.device)].cpu()
            # real images disjoint from eval_real, as many: the Fréchet distance's floor
            if len(perm) >= 2 * n:
                self.floor_real = self.images[perm[n : 2 * n].to(self.device)].cpu()
        self.eval_noise = torch.randn(cfg.eval_samples, cfg.z_dim, generator=eval_rng)
        self.grid_noise = torch.randn(N_GRID, cfg.z_dim, generator=eval_rng).to(self.device)
        self.extractor = self._extractor(features)

        generator, critic_module = build_models(
            cfg.arch, self.shape, cfg.z_dim, cfg.width, cfg.resolved_critic_norm
        )
        self.generator = generator.to(self.device)
        self.critic = wdist.WassersteinCritic(
            critic_module.to(self.device), lipschitz=cfg.lipschitz, lam=cfg.lam,
            clip_value=cfg.clip_value, optimizer=lambda params: make_optimizer(cfg, params),
        )
        self.g_optimizer = make_optimizer(cfg, self.generator.parameters())
        self.ema = EMA(self.generator, cfg.ema_decay) if cfg.ema else None
        self.step = 0
        # training goes through the DDP wrappers (the modules themselves when not distributed);
        # evaluation, samples and checkpoints through the modules
        self.batch = distributed.shard(cfg.batch_size)
        self._g_train = distributed.wrap(self.generator, self.device)
        self._critic_train = self.critic
        if distributed.is_distributed():
            self._critic_train = copy.copy(self.critic)  # the same optimiser and settings
            self._critic_train.module = distributed.wrap(self.critic.module, self.device)
        distributed.seed_rank_streams(cfg.seed)

    def _folder_eval_sets(self, eval_rng: torch.Generator) -> None:
        """Decode the evaluation images (and the floor's, when the folder has 2x as many)."""
        perm = torch.randperm(len(self.folder), generator=eval_rng).tolist()
        n = self.cfg.eval_samples
        self.eval_real = to_unit(torch.stack([self.folder[i] for i in perm[:n]]))
        if len(perm) >= 2 * n:
            self.floor_real = to_unit(torch.stack([self.folder[i] for i in perm[n : 2 * n]]))

    def _extractor(self, features: str | Path | None) -> FeatureExtractor | None:
        if self.cfg.is_toy:
            if features is not None:
                raise ValueError(f"--features {features}: toy data {self.cfg.data!r} is scored "
                                 "by exact W1; a feature extractor applies to images only")
            return None
        if features is not None:
            return FeatureExtractor(features, self.device)
        if self.shape in DIGIT_SHAPES:
            return FeatureExtractor(None, self.device)
        return None

    @property
    def sampler(self) -> torch.nn.Module:
        """The generator used for samples and evaluation: the EMA copy when enabled."""
        return self.ema.model if self.ema is not None else self.generator

    # ------------------------------------------------------------------ training
    def _real_batch(self) -> torch.Tensor:
        cfg, n = self.cfg, self.batch
        if self.folder is not None:
            if self.batches is None:  # batch k = step * n_critic + i: a resume continues it
                self.batches = FolderBatches(
                    self.folder, n, seed=distributed.rank_seed(cfg.seed), workers=cfg.workers,
                    hflip=cfg.hflip,
                    start=self.step * cfg.resolved_n_critic, device=self.device)
            return next(self.batches)
        if self.images is None:
            return sample_toy(cfg.data, n, self.data_rng).to(self.device)
        idx = torch.randint(0, len(self.images), (n,), generator=self.data_rng)
        batch = self.images[idx.to(self.device)]
        if cfg.hflip:
            flip = (torch.rand(n, generator=self.data_rng) < 0.5).to(self.device)
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        return batch

    def _noise(self) -> torch.Tensor:
        return torch.randn(self.batch, self.cfg.z_dim, device=self.device)

    def train_step(self) -> dict[str, float]:
        """One generator iteration: ``n_critic`` critic steps, one generator step, EMA update."""
        for _ in range(self.cfg.resolved_n_critic):
            with torch.no_grad():
                fake = self.generator(self._noise())
            stats = self._critic_train.step(self._real_batch(), fake)
        g_loss = wdist.generator_loss(self.critic.module, self._g_train(self._noise()))
        self.g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_optimizer.step()
        if self.ema is not None:
            self.ema.update(self.generator)
        self.step += 1
        return {**stats, "generator_loss": float(g_loss.detach())}

    def evaluate(self, use_ema: bool = False) -> dict[str, float]:
        """Toy: exact W1 of the (raw, the critic's opponent) generator and the critic's estimate
        on the same fixed samples. Images: Fréchet distance and label entropies."""
        if not self.cfg.is_toy and self.extractor is None:
            return {}
        if self.eval_real is None:
            raise RuntimeError("evaluate() needs the training images (built with shape only)")
        gen = self.sampler if use_ema else self.generator
        was_training = gen.training
        gen.eval()
        with torch.no_grad():
            fake = torch.cat([gen(z.to(self.device)).cpu() for z in self.eval_noise.split(500)])
        gen.train(was_training)
        if self.cfg.is_toy:
            self.critic.module.eval()  # no spectral-norm power iteration / batch-stat update
            with torch.no_grad():
                est = self.critic.estimate(self.eval_real.to(self.device), fake.to(self.device))
            self.critic.module.train()
            return {"w1_exact": exact_w1(fake, self.eval_real), "w1_critic": float(est)}
        # the floor does not depend on the generator: computed once
        floor = self.floor_real if self._fd_floor is None else None
        metrics = image_metrics(fake, self.eval_real, self.extractor, real_floor=floor)
        self._fd_floor = metrics.setdefault("fd_floor", self._fd_floor)
        if self._fd_floor is None:
            del metrics["fd_floor"]
        return metrics

    def save_samples(self) -> Path:
        path = self.run_dir / "samples" / f"step_{self.step:06d}.png"
        if self.cfg.is_toy:
            fake = generate(self.generator, 1000, self.cfg.z_dim, self.device,
                            torch.Generator().manual_seed(0))
            title = f"{self.cfg.data}, {self.cfg.lipschitz}, step {self.step}"
            return save_toy_figure(self.eval_real, fake, self.critic.module, path, title)
        self.sampler.eval()
        with torch.no_grad():
            grid = self.sampler(self.grid_noise)
        self.sampler.train()
        return save_grid(grid, path)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "config": dataclasses.asdict(self.cfg),
            "step": self.step,
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "g_optimizer": self.g_optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rng_state(),
            "data_rng": distributed.gather(self.data_rng.get_state()),
            "shape": self.shape,
        }

    def load_state_dict(self, state: dict) -> None:
        check_resumable(self.cfg, state["config"], free=("steps", "out_dir", "workers"))
        self.step = state["step"]
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        set_rng_state(state.get("rng", state))
        self.data_rng.set_state(distributed.own(state["data_rng"]).cpu())

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    # ------------------------------------------------------------------ the run
    def fit(self, resume: bool = False, time_limit_s: float | None = None) -> dict:
        """Train to ``cfg.steps`` generator iterations; returns the final metrics. ``resume``
        continues from ``run_dir/checkpoint.pt`` (``FileNotFoundError`` when there is none; a
        ``ValueError`` when that run is already past ``cfg.steps``). ``time_limit_s``: stop after
        the step that crosses it, with a checkpoint. On SIGINT / SIGTERM the step under way
        finishes, a checkpoint is written and :class:`Interrupted` is raised."""
        cfg = self.cfg
        deadline = time.perf_counter() + (time_limit_s or float("inf"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume()
        snapshot_config(self.run_dir, cfg)
        logger = CSVLogger(self.run_dir / "log.csv", resume=resume and self.step > 0,
                           upto=("step", self.step), tensorboard="step")
        main = distributed.is_main()  # rank 0 alone evaluates, draws and writes
        if self.step == 0 and main:
            logger.log({k: "" for k in LOG_COLUMNS} | {"step": 0, **_scalars(self.evaluate())})
        bar = progress(range(self.step, cfg.steps), total=cfg.steps, initial=self.step,
                       desc=f"wgan {cfg.lipschitz} {Path(cfg.data).name}")
        # time_s counts on from the resumed run's last logged row
        start = time.perf_counter() - float(logger.last.get("time_s") or 0.0)
        seen, elapsed = 0, 0.0
        with logger, stop_on_signal() as stop:
            for _ in bar:
                t0 = time.perf_counter()
                stats = self.train_step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                elapsed += time.perf_counter() - t0
                seen += cfg.batch_size * cfg.resolved_n_critic
                if main and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    row = {
                        "step": self.step,
                        "critic_loss": stats["critic_loss"],
                        "w1_estimate": stats["w1"],
                        "gp": stats["gp"],
                        "grad_norm": stats["grad_norm"],
                        "generator_loss": stats["generator_loss"],
                        "img_per_s": seen / max(elapsed, 1e-9),
                        "time_s": time.perf_counter() - start,
                    }
                    logger.log({k: "" for k in LOG_COLUMNS} | row | _scalars(self.evaluate()))
                    bar.set_postfix(w1=f"{stats['w1']:.3g}")
                    seen, elapsed = 0, 0.0
                if main and (self.step % cfg.sample_every == 0 or self.step == cfg.steps):
                    self.save_samples()
                # every rank checkpoints and stops at the same step
                halt = distributed.any_rank(time.perf_counter() > deadline or stop.requested)
                if (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps
                        or halt):
                    save_checkpoint(self.state_dict(), self.checkpoint_path)
                stop.check(f"at step {self.step}, checkpoint {self.checkpoint_path}")
                if halt:
                    break
        bar.close()
        if not main:
            return {"step": self.step}
        metrics = {"step": self.step, **self.evaluate(use_ema=cfg.ema)}
        if cfg.is_toy and cfg.ema:
            metrics["w1_exact_raw"] = self.evaluate(use_ema=False)["w1_exact"]
        (self.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return metrics

    def _resume(self) -> None:
        if not self.checkpoint_path.is_file():
            raise FileNotFoundError(
                f"--resume: no checkpoint at {self.checkpoint_path} (run without --resume "
                "to start a fresh run)"
            )
        self.load_state_dict(load_checkpoint(self.checkpoint_path, self.device,
                                             require=CHECKPOINT_KEYS, kind="WGAN"))
        if self.step > self.cfg.steps:
            raise ValueError(f"--resume: the run in {self.run_dir} is already at step "
                             f"{self.step}, past steps={self.cfg.steps}; ask for more steps "
                             "(e.g. --steps) to train further")
