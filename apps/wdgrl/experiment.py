"""One experiment = one task × the configured methods × seeds, on identical splits.

``run_experiment(cfg, ...)`` trains every method with :class:`WDGRLClassifier` (same loop, same
network, same optimiser; only the alignment term differs), reports target-test accuracy, and for
WDGRL checks the critic's final W1 estimate against the exact ``wdist.emd`` on the same features.
``target_only`` is the target-supervised upper bound: the source-only model trained on the
*labelled* target adaptation set.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wdist_apps.wdgrl.data import DomainTask, make_task
from wdist_apps.wdgrl.estimator import WDGRLClassifier
from wdist_apps.wdgrl.methods import METHODS
from wdist_apps.wdgrl.networks import mlp

ALL_METHODS = (*METHODS, "target_only")
PEER = "skada_dann"


@dataclass
class WDGRLConfig:
    """One YAML file in ``configs/wdgrl/`` (every key optional; defaults = the paper's)."""

    task: str = "moons"
    angle: float = 50.0
    source_path: str | None = None
    target_path: str | None = None
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    network: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [500])
    critic_hidden: list[int] = field(default_factory=lambda: [100])
    wd_weight: float = 1.0
    gp_weight: float = 10.0
    n_critic: int = 5
    lr: float = 1e-4
    critic_lr: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 32
    epochs: int = 20
    patience: int | None = None
    val_fraction: float = 0.1
    dann_weight: float = 1.0
    coral_weight: float | None = None  # None: WDGRL's own baseline weight, 0.02 k^2
    seeds: int = 3
    w1_check_samples: int = 500
    w1_refit_steps: int = 1500

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in (*ALL_METHODS, PEER)]
        if bad:
            raise ValueError(f"methods {bad} unknown; choose from {[*ALL_METHODS, PEER]}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.task != "files" and (self.source_path or self.target_path):
            raise ValueError(f"source_path / target_path (--source / --target) are read by task "
                             f"'files' only, got task {self.task!r}")

    @property
    def name(self) -> str:
        if self.task == "moons":
            return f"moons{self.angle:g}"
        if self.task == "files" and self.target_path:
            return Path(self.target_path).stem
        return self.task

    def estimator(self, method: str, seed: int, device: str | torch.device) -> WDGRLClassifier:
        keys = [f.name for f in dataclasses.fields(WDGRLConfig)]
        est_keys = set(WDGRLClassifier().get_params()) & set(keys)
        kw = {k: getattr(self, k) for k in est_keys}
        kw["hidden"], kw["critic_hidden"] = tuple(self.hidden), tuple(self.critic_hidden)
        return WDGRLClassifier(method=method, random_state=seed, device=device, **kw)


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
            if method in (PEER, "target_only") and not labelled_target:
                break  # both need target labels (to score, to train on)
            if method == PEER:
                from wdist_apps.wdgrl.peer import skada_dann_accuracy

                accs.append(skada_dann_accuracy(cfg, task, seed, device))
                secs.append(time.perf_counter() - t0)
                continue
            est = cfg.estimator("source_only" if method == "target_only" else method, seed,
                                device)
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
    for step in range(1, refit_steps + 1):
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
