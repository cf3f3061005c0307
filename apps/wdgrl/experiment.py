"""One experiment = one task × the configured methods × seeds, on identical splits.

``run_experiment(cfg, ...)`` trains every method with :class:`WDGRLClassifier` (same loop, same
network, same optimiser; only the alignment term differs), reports target-test accuracy, and for
WDGRL checks the critic's final W1 estimate against the exact ``wdist.emd`` on the same features.
``target_only`` is the target-supervised upper bound: the source-only model trained on the
*labelled* target adaptation set. ``ot_emd`` / ``ot_sinkhorn`` / ``ot_linear`` are POT's classical
OT domain adaptation with a 5-nearest-neighbour classifier on the transported source
(:mod:`wdist_apps.wdgrl.otda`); ``knn_source_only`` is that classifier on the raw source.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wdist_apps.runtime import progress
from wdist_apps.runtime.config import ConfigError, coerce
from wdist_apps.wdgrl.data import DomainTask, make_task
from wdist_apps.wdgrl.estimator import WDGRLClassifier
from wdist_apps.wdgrl.methods import METHODS
from wdist_apps.wdgrl.networks import mlp
from wdist_apps.wdgrl.otda import BENCH_ROWS, k_neighbors, otda_accuracy

ALL_METHODS = (*METHODS, "target_only")
PEER = "skada_dann"


@dataclass
class WDGRLConfig:
    """One YAML file in ``configs/wdgrl/``: the task, the methods, the seeds, and an
    ``estimator:`` block of :class:`WDGRLClassifier` parameters (each default lives there once;
    a key the estimator does not take is an error naming the valid ones)."""

    task: str = "moons"
    angle: float = 50.0
    source_path: str | None = None
    target_path: str | None = None
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    estimator: dict[str, Any] = field(default_factory=dict)
    seeds: int = 3
    w1_check_samples: int = 500
    w1_refit_steps: int = 1500

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in (*ALL_METHODS, PEER, *BENCH_ROWS)]
        if bad:
            raise ValueError(f"methods {bad} unknown; choose from "
                             f"{[*ALL_METHODS, PEER, *BENCH_ROWS]}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.task != "files" and (self.source_path or self.target_path):
            raise ValueError(f"source_path / target_path (--source / --target) are read by task "
                             f"'files' only, got task {self.task!r}")
        self.estimator = estimator_params(self.estimator)

    @property
    def name(self) -> str:
        if self.task == "moons":
            return f"moons{self.angle:g}"
        if self.task == "files" and self.target_path:
            return Path(self.target_path).stem
        return self.task

    @property
    def params(self) -> dict[str, Any]:
        """Every estimator parameter: the estimator's defaults updated by the ``estimator:``
        block (read-only view; change the block with :meth:`set`)."""
        return {**_DEFAULTS, **self.estimator}

    def set(self, **params: Any) -> WDGRLConfig:
        """Update the ``estimator:`` block (checked like the YAML)."""
        self.estimator = estimator_params({**self.estimator, **params})
        return self

    def make_estimator(self, method: str, seed: int,
                       device: str | torch.device) -> WDGRLClassifier:
        return WDGRLClassifier(**{**self.estimator, "method": method, "random_state": seed,
                                  "device": device})


_RUN_SET = ("method", "random_state", "device", "verbose")  # set per run by the experiment
_DEFAULTS = {k: v for k, v in WDGRLClassifier().get_params().items() if k not in _RUN_SET}


def estimator_params(block: Any, source: str = "estimator") -> dict[str, Any]:
    """A config's ``estimator:`` mapping checked against :class:`WDGRLClassifier`'s signature:
    unknown keys raise :class:`ConfigError`; YAML values are coerced to the parameter's type
    (lists of widths become tuples)."""
    if not isinstance(block, dict):
        raise ConfigError(f"{source}: expected a mapping of WDGRLClassifier parameters, got "
                          f"{type(block).__name__}")
    unknown = sorted(set(block) - set(_DEFAULTS))
    if unknown:
        raise ConfigError(f"{source}: unknown WDGRLClassifier parameter(s) {unknown}; valid "
                          f"keys are {sorted(_DEFAULTS)} (method, random_state and device are "
                          "set by the experiment)")
    hints = typing.get_type_hints(WDGRLClassifier.__init__)
    out = {k: coerce(f"{source}.{k}", v, hints[k]) for k, v in block.items()}
    for k in ("hidden", "critic_hidden"):
        if isinstance(out.get(k), list):
            out[k] = tuple(out[k])
    return out


def build_task(cfg: WDGRLConfig) -> DomainTask:
    return make_task(cfg.task, cfg.angle, cfg.source_path, cfg.target_path, seed=0)


def run_experiment(
    cfg: WDGRLConfig, out_dir: str | Path, device: str | torch.device = "cpu",
    resume: bool = False, verbose: bool = False,
) -> dict[str, Any]:
    """Train every method × seed; checkpoints and per-epoch CSV logs go under ``out_dir``.

    Returns ``{"task", "config", "methods": {method: {"acc": [...], "mean", "std", "seconds",
    "history": [per-seed epoch rows]}}, "w1_check": [...], "models": {method: seed-0 model}}``;
    ``seconds``: median training time (sum of the epoch times).
    """
    out_dir = Path(out_dir)
    task = build_task(cfg)
    labelled_target = task.labelled_target
    result: dict[str, Any] = {"task": cfg.name, "summary": task.summary(),
                              "config": dataclasses.asdict(cfg), "methods": {}, "w1_check": [],
                              "models": {}}
    for method in cfg.methods:
        accs, secs, hists = [], [], []
        for seed in range(cfg.seeds):
            t0 = time.perf_counter()
            if method in (PEER, "target_only", *BENCH_ROWS) and not labelled_target:
                break  # they need target labels (to score, to train on)
            if method in BENCH_ROWS:  # deterministic: one run, whatever the seeds
                accs.append(otda_accuracy(method.removeprefix("knn_"), task.Xs, task.ys,
                                          task.Xt, task.Xt_test, task.yt_test,
                                          classifier=k_neighbors))
                secs.append(time.perf_counter() - t0)
                break
            if method == PEER:
                from wdist_apps.wdgrl.peer import skada_dann_accuracy

                accs.append(skada_dann_accuracy(cfg, task, seed, device))
                secs.append(time.perf_counter() - t0)
                continue
            est = cfg.make_estimator("source_only" if method == "target_only" else method,
                                     seed, device)
            est.verbose = verbose
            Xs, ys = (task.Xt, task.yt) if method == "target_only" else (task.Xs, task.ys)
            stem = out_dir / cfg.name / f"{method}_seed{seed}"
            est.fit(Xs, ys, task.Xt, eval_set=(task.Xt_test, task.yt_test) if labelled_target
                    else None, checkpoint=stem.with_suffix(".pt"), resume=resume,
                    log_csv=stem.with_suffix(".csv"))
            secs.append(sum(row["seconds"] for row in est.history_))  # survives --resume
            hists.append(est.history_)
            if labelled_target:
                accs.append(float(est.score(task.Xt_test, task.yt_test)))
            if method == "wdgrl" and seed == 0:  # one check per task (it costs a critic refit)
                result["w1_check"].append(
                    w1_check(est, task, cfg.w1_check_samples, seed, cfg.w1_refit_steps))
            if seed == 0:
                result["models"][method] = est
        if secs:
            result["methods"][method] = {
                "acc": accs, "mean": float(np.mean(accs)) if accs else None,
                "std": float(np.std(accs)) if accs else None,
                "seconds": float(np.median(secs)), "history": hists,
            }
    return result


def w1_check(
    est: WDGRLClassifier, task: DomainTask, n: int, seed: int, refit_steps: int = 1500,
    refit_hidden: tuple[int, ...] = (512, 512), refit_lam: float = 20.0,
) -> dict[str, float]:
    """The critic's W1 vs the exact W1 (``wdist.emd``) on the same ``n`` + ``n`` features.

    ``critic_w1``: the training critic's raw estimate E f(h_s) − E f(h_t) (it tracks a moving
    target, one batch at a time); ``critic_cert``: the same critic's certified lower bound
    (:func:`wdist.certified_w1`, the estimate divided by the critic's measured slope on these
    samples). ``refit_cert``: a wider critic (``refit_hidden``) refit on these frozen features
    with the constraint where the empirical W1 looks, the ``"pairs"`` penalty (weight
    ``refit_lam``), ``refit_steps`` full-batch Adam steps (lr 1e-3, cosine decay), its certified
    bound checked every 100 steps and the best kept. Every value is a lower bound on the emd, so
    neither the maximum nor any choice of ``refit_lam`` can overshoot it.
    ``fresh_cert`` / ``fresh_emd``: that best refit critic's certified bound on disjoint fresh
    samples and their emd (how much of the in-sample agreement carries over: the part that does
    not is fitted to the ``n`` samples). ``emd_floor``: ``emd`` between two disjoint ``n``-sample
    sets of *source* features, the finite-sample part of an ``n`` vs ``n`` empirical W1 (zero for
    the populations).
    """
    from wdist import WassersteinCritic, certified_w1, emd

    rng = np.random.default_rng(seed)
    n = min(n, len(task.Xs) // 2, len(task.Xt))
    src = rng.permutation(len(task.Xs))
    tgt = rng.permutation(len(task.Xt))
    n_fresh = min(n, len(task.Xt) - n)  # fresh pairs: h_other and targets the refit never saw
    device = next(est.head_.parameters()).device

    def feats(X: np.ndarray, domain: str = "target") -> torch.Tensor:
        return torch.from_numpy(est.transform(X, domain=domain)).to(device)

    hs, h_other = feats(task.Xs[src[:n]], "source"), feats(task.Xs[src[n:2 * n]], "source")
    ht = feats(task.Xt[tgt[:n]])
    critic = est.aligner_.critic
    with torch.no_grad():
        estimate = critic.estimate(hs, ht).item()
    cert = certified_w1(critic.module, hs, ht).item()
    torch.manual_seed(seed)
    wide = WassersteinCritic(mlp(hs.shape[1], list(refit_hidden), 1).to(device), "pairs",
                             lam=refit_lam, optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-3))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(wide.optimizer, max(refit_steps, 1))
    refit, best_state = 0.0, copy.deepcopy(wide.module.state_dict())
    for step in progress(range(1, refit_steps + 1), desc="W1 check: critic refit", leave=False):
        wide.step(hs, ht)
        sched.step()
        if step % 100 == 0 or step == refit_steps:
            value = certified_w1(wide.module, hs, ht).item()
            if value > refit:
                refit, best_state = value, copy.deepcopy(wide.module.state_dict())
    wide.module.load_state_dict(best_state)
    exact = emd(hs.double(), ht.double(), p=1).item()
    floor = emd(hs.double(), h_other.double(), p=1).item()
    out = {"seed": seed, "n": n, "critic_w1": estimate, "critic_cert": cert, "refit_cert": refit,
           "emd_w1": exact, "emd_floor": floor,
           "rel_error": abs(estimate - exact) / max(exact, 1e-12),
           "refit_rel_error": abs(refit - exact) / max(exact, 1e-12),
           "n_fresh": max(n_fresh, 0), "fresh_cert": float("nan"), "fresh_emd": float("nan")}
    if n_fresh > 0:
        fs, ft = h_other[:n_fresh], feats(task.Xt[tgt[n : n + n_fresh]])
        out["fresh_cert"] = certified_w1(wide.module, fs, ft).item()
        out["fresh_emd"] = emd(fs.double(), ft.double(), p=1).item()
    return out
