"""A training run end to end: config -> train -> learning curve -> evaluation -> summary.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wdist_apps.qrdqn.agent import train
from wdist_apps.qrdqn.config import QRDQNConfig
from wdist_apps.qrdqn.evaluate import evaluate, load_agent
from wdist_apps.qrdqn.plot import plot_curves
from wdist_apps.runtime import distributed, load_config, resolve_device
from wdist_apps.runtime.config import to_dict
from wdist_apps.runtime.machine import command_line, describe
from wdist_apps.runtime.run import open_run_dir, snapshot_config


def train_and_report(config: str | Path | None, overrides: dict[str, Any], out: str | Path,
                     device: str | torch.device = "auto", resume: bool = False,
                     time_limit_s: float | None = None, eval_episodes: int = 0,
                     agent: str = "qrdqn", overwrite: bool = False) -> dict[str, Any]:
    """Train ``agent`` ("qrdqn" or "pqn", the quantile PQN) with ``config`` (+ ``overrides``)
    into the run folder ``out`` (refused when it holds a run, unless ``resume`` or
    ``overwrite``); plot; optionally evaluate."""
    if eval_episodes < 0:
        raise ValueError(f"eval_episodes must be >= 0, got {eval_episodes}")
    if time_limit_s is not None and time_limit_s <= 0:
        raise ValueError(f"time_limit_s must be > 0, got {time_limit_s}")
    if agent not in ("qrdqn", "pqn"):
        raise ValueError(f"agent must be 'qrdqn' or 'pqn', got {agent!r}")
    device = resolve_device(device)
    if agent == "pqn":
        from wdist_apps.qrdqn import pqn

        if distributed.is_distributed():
            raise ValueError("the quantile PQN does not run data parallel: start it without "
                             "torchrun (QR-DQN does)")
        cfg = load_config(pqn.PQNConfig, config, overrides)
        train_fn, loss_column, title = pqn.train, "td_loss", "quantile PQN learning curve"
    else:
        cfg = load_config(QRDQNConfig, config, overrides)
        train_fn, loss_column, title = train, "loss", "QR-DQN learning curve"
    out = open_run_dir(out, resume=resume, overwrite=overwrite)
    snapshot_config(out, cfg)
    result = train_fn(cfg, out, device, resume=resume, time_limit_s=time_limit_s)
    if not distributed.is_main():  # under torchrun rank 0 plots, evaluates and reports
        return {k: v for k, v in result.items() if k != "net"}
    plot_curves([out / "log.csv"], out / "curve.png", labels=[cfg.env_id],
                loss_column=loss_column, title=title)
    summary: dict[str, Any] = {k: v for k, v in result.items() if k != "net"}
    if eval_episodes:
        eval_cfg, net = load_agent(out / "checkpoint.pt", device)
        returns = evaluate(net, eval_cfg, eval_episodes, device, csv_path=out / "eval.csv")
        summary.update(eval_episodes=len(returns), eval_mean_return=float(np.mean(returns)),
                       eval_std_return=float(np.std(returns)), eval_epsilon=eval_cfg.epsilon_eval)
    summary.update(config=to_dict(cfg), device=str(device), machine=describe(device),
                   torch=torch.__version__, command=command_line())
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
