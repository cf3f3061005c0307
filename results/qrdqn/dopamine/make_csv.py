"""Dopamine's published per-iteration QR-DQN Pong returns -> ``pong_qrdqn.csv`` (run once).

Usage, with DOPAMINE a checkout of https://github.com/google/dopamine (commit in README.md):

    python results/qrdqn/dopamine/make_csv.py DOPAMINE results/qrdqn/dopamine/pong_qrdqn.csv

Reads ``baselines/atari/data/pong.json`` (agent "Quantile (JAX)", the ``quantile.gin`` agent) and
``pong_CNN.json`` (agent "QR-DQN"); each holds 5 runs, one value per iteration: the mean return of
the training episodes of that iteration (250,000 agent steps = 1M frames, epsilon 0.01, sticky
actions). One output row per agent and iteration: the 5 runs' values (in the file's order; which
run is which is not recorded in pong_CNN.json) and their mean.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

SOURCES = (("pong.json", "Quantile (JAX)"), ("pong_CNN.json", "QR-DQN"))
FRAMES_PER_ITERATION = 1_000_000


def main(checkout: str, out: str) -> None:
    rows = []
    for name, agent in SOURCES:
        data = json.loads((Path(checkout) / "baselines/atari/data" / name).read_text())
        values: dict[int, list[float]] = {}
        for record in data:
            if record["Agent"] == agent:
                values.setdefault(int(record["Iteration"]), []).append(float(record["Value"]))
        for it in sorted(values):
            runs = values[it]
            rows.append({"source": name, "agent": agent, "iteration": it,
                         "frames_start": it * FRAMES_PER_ITERATION,
                         "frames_end": (it + 1) * FRAMES_PER_ITERATION, "runs": len(runs),
                         "train_return_mean": sum(runs) / len(runs),
                         "train_return_min": min(runs), "train_return_max": max(runs),
                         "train_returns": " ".join(f"{v:.4f}" for v in runs)})
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
