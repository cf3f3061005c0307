"""Run configs and write ``results/wdgrl/``: markdown table, json, exact command, plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wdist_apps.runtime import load_config, resolve_device
from wdist_apps.runtime.config import builtin_configs
from wdist_apps.runtime.machine import machine_info, markdown_header
from wdist_apps.runtime.run import open_run_dir, snapshot_config
from wdist_apps.wdgrl.experiment import ALL_METHODS, PEER, WDGRLConfig, build_task, run_experiment
from wdist_apps.wdgrl.otda import BENCH_ROWS, OT_METHODS
from wdist_apps.wdgrl.plots import plot_curves, plot_features, plot_summary

CONFIG_DIR = builtin_configs("wdgrl")
BENCH = ("moons10", "moons30", "moons50", "moons70", "moons90", "mnist_digits", "digits_mnist",
         "synth_mnist", "mnist_mnistm")


def run_one(
    config: str | Path, overrides: dict[str, Any], out: str | Path, device: str,
    resume: bool = False, overwrite: bool = False,
) -> dict[str, Any]:
    """``wdist wdgrl run --config ...``: one task, all its methods × seeds, table + plots. A
    folder that already holds this task's run is refused unless ``resume`` or ``overwrite``."""
    cfg = _available(_load(config, overrides))
    out = open_run_dir(out, resume=resume, overwrite=overwrite,
                       owned=(f"runs/{cfg.name}/*", f"{cfg.name}.json"))
    _check_resume(resume, out / "runs" / cfg.name)
    snapshot_config(out / "runs" / cfg.name, cfg)
    result = _run(cfg, out, device, resume, verbose=True)
    rows = [_public(result)]
    write_report(rows, out, f"{cfg.name}", device)
    return result


def run_bench(
    out: str | Path, device: str, seeds: int | None = None, epochs: int | None = None,
    resume: bool = False, overwrite: bool = False, methods: list[str] | None = None,
) -> list[dict[str, Any]]:
    """``wdist wdgrl bench``: every task in :data:`BENCH` × its methods × seeds.

    ``methods``: only these (those a task's config lists), written to ``bench_<m1>+<m2>...``
    instead of ``bench``, e.g. the classical OT rows alone."""
    configs = [_available(_load(CONFIG_DIR / f"{name}.yaml", {"seeds": seeds, "epochs": epochs}),
                          quiet=i > 0)
               for i, name in enumerate(BENCH)]
    if methods:
        for cfg in configs:
            cfg.methods = [m for m in cfg.methods if m in methods]
    report = "bench" if not methods else "bench_" + "+".join(methods)
    out = open_run_dir(out, resume=resume, overwrite=overwrite,
                       owned=("runs/*", f"{report}.json"))
    _check_resume(resume, out / "runs")
    rows = []
    for name, cfg in zip(BENCH, configs, strict=True):
        print(f"[wdgrl bench] {name}: {cfg.methods} x {cfg.seeds} seeds", flush=True)
        rows.append(_public(_run(cfg, out, device, resume, verbose=False)))
        write_report(rows, out, report, device)  # partial results survive a Ctrl-C
    return rows


def _load(config: str | Path, overrides: dict[str, Any]) -> WDGRLConfig:
    """The config with command-line overrides; ``epochs``, any other estimator parameter and
    ``estimator.KEY`` (``--set lr=0.01`` or ``--set estimator.lr=0.01``) go to its
    ``estimator:`` block, the rest to the top level."""
    top, est = {}, {}
    for key, value in overrides.items():
        name = key.removeprefix("estimator.")
        if value is not None and (name != key or name in WDGRLConfig().params):
            est[name] = value
        else:
            top[key] = value
    cfg = load_config(WDGRLConfig, config, top)
    return cfg.set(**est) if est else cfg


def _available(cfg: WDGRLConfig, quiet: bool = False) -> WDGRLConfig:
    """``cfg`` without the methods whose optional package is missing (one line says which),
    checked before any training starts."""
    if PEER in cfg.methods:
        try:
            import skada.deep  # noqa: F401
            import skorch  # noqa: F401
        except ImportError as err:  # not only ModuleNotFoundError: a broken install counts too
            if not quiet:
                print(f"[wdgrl] skipping {PEER}: it needs the bench extra, pip install "
                      f"'wdist[bench]' (skada and skorch; {type(err).__name__}: {err})",
                      flush=True)
            cfg.methods = [m for m in cfg.methods if m != PEER]
    return cfg


def _check_resume(resume: bool, runs: Path) -> None:
    """``--resume`` with nothing to resume under ``runs`` is an error (a mistyped ``--out``), not
    a silent fresh start; runs not started yet under a partly done folder start afresh."""
    if resume and not any(runs.rglob("*_seed*.pt")):
        raise FileNotFoundError(f"--resume: no checkpoint under {runs} (run without --resume "
                                "to start afresh)")


def _run(cfg: WDGRLConfig, out: Path, device: str, resume: bool, verbose: bool) -> dict:
    result = run_experiment(cfg, out / "runs", device, resume=resume, verbose=verbose)
    if any(r["history"] for r in result["methods"].values()):  # not for the OT rows alone
        plot_curves(result, out / f"curves_{cfg.name}.png")
    if result["models"]:
        plot_features(build_task(cfg), result["models"], out / f"features_{cfg.name}.png")
    _print_result(result)
    return result


def _public(result: dict[str, Any]) -> dict[str, Any]:
    """The json-able part of a result (no models, histories trimmed to a few columns)."""
    keep = ("epoch", "clf_loss", "w1", "source_val_acc", "target_acc", "seconds")
    methods = {
        m: {**{k: v for k, v in r.items() if k != "history"},
            "history": [[{k: row[k] for k in keep} for row in h] for h in r["history"]]}
        for m, r in result["methods"].items()
    }
    return {"task": result["task"], "summary": result["summary"], "config": result["config"],
            "methods": methods, "w1_check": result["w1_check"]}


def _print_result(result: dict[str, Any]) -> None:
    for m, r in result["methods"].items():
        acc = f"{r['mean']:.3f} ± {r['std']:.3f}" if r["mean"] is not None else "n/a"
        print(f"  {result['task']:>13} {m:>12}: target acc {acc}  ({r['seconds']:.1f} s/run)",
              flush=True)
    for c in result["w1_check"]:
        print(f"  critic W1 {c['critic_w1']:.4f} (certified {c['critic_cert']:.4f}, pairs refit "
              f"{c['refit_cert']:.4f}) vs emd {c['emd_w1']:.4f} (refit rel. err "
              f"{c['refit_rel_error']:.1%}; fresh samples {_fresh(c)}; emd floor "
              f"{c['emd_floor']:.4f})", flush=True)


def write_report(rows: list[dict[str, Any]], out: Path, name: str, device: str) -> Path:
    """``<name>.md`` (table), ``<name>.json`` (everything behind it), and a summary bar plot."""
    out.mkdir(parents=True, exist_ok=True)
    methods = [m for m in (*ALL_METHODS, PEER, *BENCH_ROWS)
               if any(m in r["methods"] for r in rows)]
    meta = environment(str(resolve_device(device)))
    lines = [
        f"# WDGRL benchmark: target test accuracy ({name})", "",
        "Mean ± std over seeds; every method uses the same split, network, optimiser and "
        "epochs; no target label is used for training or model selection (target_only is the "
        "target-supervised upper bound). ot_*: POT's `ot.da` transport of the source onto the "
        "target + a 5-nearest-neighbour classifier, knn_source_only: that classifier on the "
        "raw source (one deterministic run each). Bold: best adaptation method per task.", "",
        "| task | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for r in rows:
        adapt = {m: r["methods"][m]["mean"] for m in ("wdgrl", "dann", "coral", PEER, *OT_METHODS)
                 if m in r["methods"] and r["methods"][m]["mean"] is not None
                 and np.isfinite(r["methods"][m]["mean"])}
        best = max(adapt, key=adapt.get) if adapt else None
        cells = []
        for m in methods:
            res = r["methods"].get(m)
            if res is None or res["mean"] is None:
                cells.append("–")
                continue
            if not np.isfinite(res["mean"]):
                cells.append("failed")  # POT's error is in the run's output
                continue
            cell = f"{res['mean']:.3f} ± {res['std']:.3f}"
            cells.append(f"**{cell}**" if m == best else cell)
        lines.append(f"| {r['task']} | " + " | ".join(cells) + " |")
    lines += ["", "Training seconds per run (sum of its epoch times, so a resumed run keeps its "
              "own; skada: wall clock), median over seeds:", "",
              "| task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for r in rows:
        lines.append(f"| {r['task']} | " + " | ".join(
            f"{r['methods'][m]['seconds']:.1f}" if m in r["methods"] else "–" for m in methods)
            + " |")
    checks = [(r["task"], c) for r in rows for c in r["w1_check"]]
    if checks:
        lines += ["", "WDGRL critic's final W1 vs the exact W1 (`wdist.emd`) on the same features "
                  "(n source + n target samples). *raw*: E f(h_s) − E f(h_t) of the training "
                  "critic; *cert.*: that value divided by the critic's measured slope on these "
                  "samples (`wdist.certified_w1`), a lower bound on the emd that cannot "
                  "over-shoot; *pairs refit*: a fresh 512-512 critic refit full-batch on these "
                  "frozen features with the constraint on the sample pairs "
                  "(`WassersteinCritic(..., \"pairs\")`), best certified bound over its run; "
                  "*fresh*: that refit critic's certified bound on disjoint fresh samples / their "
                  "emd (the in-sample agreement that does not carry over is fitted to the n "
                  "samples); *emd floor*: emd between two disjoint n-sample sets of source "
                  "features (what an n vs n empirical W1 measures when the populations are "
                  "equal).", "",
                  "| task | n | critic raw (rel. err) | critic cert. | pairs refit cert. "
                  "(rel. err) | emd W1 | fresh: refit cert. / emd | emd floor |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {t} | {c['n']} | {c['critic_w1']:.4f} ({c['rel_error']:.1%}) | "
                  f"{c['critic_cert']:.4f} | {c['refit_cert']:.4f} ({c['refit_rel_error']:.1%}) "
                  f"| {c['emd_w1']:.4f} | {_fresh(c)} | {c['emd_floor']:.4f} |"
                  for t, c in checks]
    lines += ["", markdown_header(meta), ""]
    md = out / f"{name}.md"
    md.write_text("\n".join(lines))
    # strict JSON: a value that is not a number (no W1 for a method without a critic) is null
    (out / f"{name}.json").write_text(json.dumps(_finite({"meta": meta, "tasks": rows}),
                                                 indent=1, default=_json_default,
                                                 allow_nan=False))
    plot_summary(rows, methods, out / f"{name}_accuracy.png")
    return md


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (numpy's too) replaced by None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def _fresh(check: dict[str, Any]) -> str:
    if not check.get("n_fresh"):
        return "– (too few samples)"
    return f"{check['fresh_cert']:.4f} / {check['fresh_emd']:.4f} (n = {check['n_fresh']})"


def environment(device: str | None = None) -> dict[str, Any]:
    """:func:`wdist_apps.runtime.machine.machine_info` plus ``machine`` (CPU [+ GPU]) and ``torch``.

    ``device`` None: CUDA when available (what ``benchmarks/wdgrl.py`` measures on).
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    info = machine_info(device)
    info["machine"] = str(info["cpu"]) + (f" + {info['gpu']}" if info["gpu"] else "")
    info["torch"] = torch.__version__
    return info


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
