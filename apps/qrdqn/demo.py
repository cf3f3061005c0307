"""``wdist demo`` part for QR-DQN: a short CartPole-v1 run through the full agent and its curve."""

from __future__ import annotations

from pathlib import Path

import torch

from wdist_apps.qrdqn.agent import train
from wdist_apps.qrdqn.config import QRDQNConfig
from wdist_apps.qrdqn.plot import plot_curves
from wdist_apps.runtime import load_config
from wdist_apps.runtime.config import builtin_configs

CONFIG = builtin_configs("qrdqn") / "cartpole.yaml"


def run(out_dir: Path, device: torch.device) -> list[Path]:
    """About 20 s on 2 CPU cores: 12k CartPole frames of QR-DQN, then the learning curve PNG."""
    run_dir = Path(out_dir) / "qrdqn_cartpole"
    cfg = load_config(QRDQNConfig, CONFIG, {"total_frames": 12_000, "log_every_steps": 1000})
    train(cfg, run_dir, torch.device(device), time_limit_s=25.0)
    png = plot_curves([run_dir / "log.csv"], Path(out_dir) / "qrdqn_cartpole_curve.png",
                      labels=["QR-DQN, CartPole-v1 (demo length)"],
                      reference={"solved (475)": 475.0})
    return [png, run_dir / "log.csv", run_dir / "checkpoint.pt"]
