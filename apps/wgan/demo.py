"""``wdist_apps.demo`` hook: a ~20 s spectrally normalised WGAN on 8 Gaussians, writing a figure."""

from __future__ import annotations

from pathlib import Path

import torch

from wdist_apps.runtime import load_config
from wdist_apps.wgan.config import WGANConfig
from wdist_apps.wgan.results import CONFIGS
from wdist_apps.wgan.trainer import Trainer


def run(out_dir: Path, device: torch.device) -> list[Path]:
    """Train a small SN-WGAN (toy_sn.yaml: the WGAN-GP toy script's optimiser) on 8 Gaussians
    for 300 generator steps; returns the sample figure and the CSV log."""
    out_dir = Path(out_dir)
    run_dir = out_dir / "wgan_8gaussians"
    cfg = load_config(WGANConfig, CONFIGS / "toy_sn.yaml", {
        "steps": 300, "sample_every": 300, "checkpoint_every": 300,
        "log_every": 50,
        "out_dir": str(run_dir)})
    trainer = Trainer(cfg, device)
    metrics = trainer.fit()
    figure = run_dir / "samples" / f"step_{cfg.steps:06d}.png"
    print(f"wgan demo: exact W1 (wdist.emd) {metrics['w1_exact']:.3f}, figure {figure}")
    return [figure, run_dir / "log.csv"]
