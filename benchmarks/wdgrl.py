"""Training speed (epoch time) of WDGRL and the baselines vs skada's DANN, same data, same process.

    python benchmarks/wdgrl.py [--device cpu|cuda|auto] [--epochs 4] [--repeats 3] [--tasks ...]

Task: MNIST -> scikit-learn digits (MLP [500, 100], batches 32+32, the configs' setting) and
MNIST -> MNIST-M (the small CNN). One "epoch" = one pass over the source training set.
Reports the median seconds per 1,000 source samples (first epoch of each run dropped: warm-up)
over ``repeats`` runs, and the ratio to skada's DANN where skada is installed.
Writes ``results/wdgrl/speed_<device>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wdist_apps.runtime import load_config, resolve_device  # noqa: E402
from wdist_apps.wdgrl.experiment import WDGRLConfig, build_task  # noqa: E402
from wdist_apps.wdgrl.report import environment  # noqa: E402

TASKS = ("mnist_digits", "mnist_mnistm")
METHODS = ("source_only", "wdgrl", "dann", "coral")


def our_times(
    cfg: WDGRLConfig, task, method: str, device: torch.device, epochs: int
) -> list[float]:
    cfg.set(epochs=epochs)
    est = cfg.make_estimator(method, 0, device).fit(task.Xs, task.ys, task.Xt)
    if device.type == "cuda":
        torch.cuda.synchronize()
    n_train = len(task.Xs) - int(round(cfg.params["val_fraction"] * len(task.Xs)))
    return [1000 * row["seconds"] / n_train for row in est.history_[1:]]


def skada_times(
    cfg: WDGRLConfig, task, device: torch.device, epochs: int
) -> list[float] | None:
    try:
        from wdist_apps.wdgrl.peer import skada_dann
    except ImportError:
        return None
    try:
        cfg.set(epochs=epochs)
        net = skada_dann(cfg, task.Xs.shape[1:], 10, 0, device)
    except ImportError:
        return None
    X = np.concatenate([task.Xs, task.Xt]).astype(np.float32)
    y = np.concatenate([task.ys, np.full(len(task.Xt), -1)]).astype(np.int64)
    dom = np.concatenate([np.ones(len(task.Xs)), -2 * np.ones(len(task.Xt))]).astype(np.int64)
    net.fit(X, y, sample_domain=dom)
    # skada's epoch: max(n_source, n_target) samples of each domain in balanced batches.
    bs = cfg.params["batch_size"]
    n = max(len(task.Xs) - len(task.Xs) % bs, len(task.Xt) - len(task.Xt) % bs)
    return [1000 * d / n for d in net.history[1:, "dur"]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--out", default=str(ROOT / "results" / "wdgrl"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rows = []
    for name in args.tasks:
        cfg = load_config(WDGRLConfig, ROOT / "configs" / "wdgrl" / f"{name}.yaml")
        task = build_task(cfg)
        times: dict[str, list[float]] = {}
        for method in METHODS:
            times[method] = [t for _ in range(args.repeats)
                             for t in our_times(cfg, task, method, device, args.epochs)]
        if cfg.params["network"] == "mlp":
            peer = [skada_times(cfg, task, device, args.epochs) for _ in range(args.repeats)]
            if all(p is not None for p in peer):
                times["skada_dann"] = [t for p in peer for t in p]
        med = {m: statistics.median(v) for m, v in times.items()}
        rows.append({"task": name, "network": cfg.params["network"], "n_source": len(task.Xs),
                     "median_s_per_1k_source": med, "samples": times})
        print(name, {m: f"{v:.3f}s" for m, v in med.items()}, flush=True)
    meta = environment()
    meta.update(device=str(device), threads=args.threads,
                command="python benchmarks/wdgrl.py " + " ".join(sys.argv[1:]))
    try:
        import skada

        meta["skada"] = skada.__version__
    except ImportError:
        meta["skada"] = "not installed (peer skipped)"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = device.type
    (out / f"speed_{tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    cols = list(dict.fromkeys(m for r in rows for m in r["median_s_per_1k_source"]))
    lines = [f"# WDGRL epoch time ({tag})", "",
             f"Median seconds per 1,000 source samples (each with a target sample) over "
             f"{args.repeats} runs × {args.epochs - 1} epochs (first epoch dropped), batches of "
             "32 source + 32 target. wdgrl includes its 10 critic steps per extractor step "
             "(the Office-Caltech setting). Last column: our DANN's time / skada's DANN's.", "",
             "| task | network | " + " | ".join(cols) + " | dann / skada_dann |",
             "|---|---|" + "---|" * (len(cols) + 1)]
    for r in rows:
        med = r["median_s_per_1k_source"]
        ratio = (f"{med['dann'] / med['skada_dann']:.2f}" if "skada_dann" in med else "–")
        lines.append(f"| {r['task']} | {r['network']} | "
                     + " | ".join(f"{med[c]:.3f}" if c in med else "–" for c in cols)
                     + f" | {ratio} |")
    lines += ["", f"Machine: {meta['machine']}; device {meta['device']}; torch {meta['torch']}; "
              f"skada {meta['skada']}.", "", f"Command: `{meta['command']}`", ""]
    (out / f"speed_{tag}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
