"""WDGRL with defaults vs POT's classical OT domain adaptation on generated, unseen shifts.

    python benchmarks/wdgrl_shifts.py [--seeds report|tune] [--kinds ...] [--params JSON]
                                      [--jobs 2] [--out results/wdgrl]

Every task of :mod:`wdist_apps.wdgrl.shifts` (each kind × each seed) is solved by: a logistic
regression on the source (``source_only``, the reference), POT's ``ot.da`` EMD / Sinkhorn /
linear (Gaussian) transport + the same logistic regression, and ``WDGRLClassifier()`` with its
defaults (``--params`` adds estimator parameters, for the tuning runs on ``--seeds tune``).
Criterion: on every task where EMD gains at least 0.2 over ``source_only``, WDGRL gains at least
half of EMD's gain. Writes ``shifts.md`` / ``shifts.json`` (every task, the mean and spread per
kind, the command, machine and versions) with ``--out``; prints only without it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wdist_apps.wdgrl.estimator import WDGRLClassifier  # noqa: E402
from wdist_apps.wdgrl.otda import OT_METHODS, otda_accuracy  # noqa: E402
from wdist_apps.wdgrl.report import environment  # noqa: E402
from wdist_apps.wdgrl.shifts import KINDS, REPORT_SEEDS, TUNE_SEEDS, make_shift_task  # noqa: E402

COLUMNS = ("source_only", *OT_METHODS, "wdgrl")
MIN_EMD_GAIN = 0.2


def run_task(kind: str, seed: int, params: dict) -> dict:
    """Accuracies of every column on one generated task, WDGRL's time and the criterion."""
    torch.set_num_threads(1)
    t = make_shift_task(kind, seed)
    row = {"kind": kind, "seed": seed}
    for m in ("source_only", *OT_METHODS):
        row[m] = otda_accuracy(m, t.Xs, t.ys, t.Xt, t.Xt_test, t.yt_test)
    t0 = time.perf_counter()
    est = WDGRLClassifier(**{"random_state": 0, "device": "cpu", **params})
    row["wdgrl"] = float(est.fit(t.Xs, t.ys, t.Xt).score(t.Xt_test, t.yt_test))
    row["wdgrl_seconds"] = time.perf_counter() - t0
    emd_gain = row["ot_emd"] - row["source_only"]
    row["criterion"] = ("n/a" if emd_gain < MIN_EMD_GAIN else
                        "met" if row["wdgrl"] - row["source_only"] >= emd_gain / 2 else "missed")
    return row


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds per kind, and the criterion's count."""
    out = []
    for kind in dict.fromkeys(r["kind"] for r in rows):
        rs = [r for r in rows if r["kind"] == kind]
        s = {"kind": kind, "n": len(rs)}
        for c in COLUMNS:
            v = [r[c] for r in rs]
            s[c] = (float(np.mean(v)), float(np.std(v)))
        s["met"] = sum(r["criterion"] == "met" for r in rs)
        s["applies"] = sum(r["criterion"] != "n/a" for r in rs)
        out.append(s)
    return out


def markdown(rows: list[dict], summary: list[dict], meta: dict) -> str:
    lines = ["# WDGRL vs classical OT domain adaptation on generated shifts", "",
             "Target test accuracy. `source_only`: logistic regression on the source; `ot_*`: "
             "POT's `ot.da` transport of the source onto the target + the same logistic "
             "regression; `wdgrl`: `WDGRLClassifier()` with its defaults"
             + (f" and {meta['params']}" if meta["params"] else "") + ". Criterion: where EMD "
             f"gains >= {MIN_EMD_GAIN} over source_only, WDGRL gains >= half of EMD's gain. "
             "Tasks from `wdist_apps.wdgrl.shifts` (seeds "
             f"{meta['seeds'][0]}-{meta['seeds'][-1]}; the estimator's defaults were chosen on "
             "other seeds).", "",
             "## Mean ± std over seeds, per kind", "",
             "| kind | tasks | " + " | ".join(COLUMNS) + " | criterion met / applies |",
             "|---|---|" + "---|" * (len(COLUMNS) + 1)]
    for s in summary:
        lines.append(f"| {s['kind']} | {s['n']} | "
                     + " | ".join(f"{s[c][0]:.3f} ± {s[c][1]:.3f}" for c in COLUMNS)
                     + f" | {s['met']} / {s['applies']} |")
    met = sum(s["met"] for s in summary)
    applies = sum(s["applies"] for s in summary)
    lines += ["", f"Criterion met on {met} of the {applies} tasks where it applies "
              f"({len(rows)} tasks in all).", "", "## Every task", "",
              "| task | " + " | ".join(COLUMNS) + " | wdgrl s | EMD gain | WDGRL gain | "
              "criterion |", "|---|" + "---|" * (len(COLUMNS) + 4)]
    for r in rows:
        lines.append(f"| {r['kind']} s{r['seed']} | "
                     + " | ".join(f"{r[c]:.3f}" for c in COLUMNS)
                     + f" | {r['wdgrl_seconds']:.1f} | {r['ot_emd'] - r['source_only']:+.3f} | "
                     f"{r['wdgrl'] - r['source_only']:+.3f} | {r['criterion']} |")
    lines += ["", f"- machine: {meta['machine']}, torch threads: 1",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
              + f", scikit-learn {meta['sklearn']}",
              f"- command: `{meta['command']}`", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", choices=["report", "tune"], default="report")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--params", default="{}", help="extra WDGRLClassifier parameters (JSON)")
    ap.add_argument("--out", help="folder for shifts.md / shifts.json (default: print only)")
    ap.add_argument("--jobs", type=int, default=1, help="tasks run in parallel processes")
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = json.loads(args.params)
    seeds = REPORT_SEEDS if args.seeds == "report" else TUNE_SEEDS
    jobs = [(kind, seed, params) for kind in args.kinds for seed in seeds]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        rows = pool.starmap(run_task, jobs, chunksize=1)
    for r in rows:
        print(f"{r['kind']} s{r['seed']}: " + " ".join(f"{c} {r[c]:.3f}" for c in COLUMNS)
              + f" ({r['wdgrl_seconds']:.1f} s) {r['criterion']}", flush=True)
    summary = summarise(rows)
    import sklearn

    meta = environment("cpu")
    meta.update(params=params, seeds=list(seeds), sklearn=sklearn.__version__,
                command="python benchmarks/wdgrl_shifts.py " + " ".join(sys.argv[1:]))
    text = markdown(rows, summary, meta)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "shifts.md").write_text(text)
        (out / "shifts.json").write_text(json.dumps({"meta": meta, "summary": summary,
                                                     "tasks": rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
