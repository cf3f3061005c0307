"""``WDGRLClassifier``: scikit-learn-style unsupervised domain adaptation, WDGRL by default.

    clf = WDGRLClassifier().fit(Xs, ys, Xt)      # labelled source, unlabelled target
    clf.predict(Xt_test); clf.score(Xt_test, yt_test); clf.transform(X)   # -> features

The training loop (Shen et al. 2018, Algorithm 1) per step: draw ``batch_size`` source and
``batch_size`` target samples, compute features with the shared extractor, let the method's
aligner do its pre-step work (WDGRL: ``n_critic`` critic updates on the detached features), then
one extractor + classifier update on ``cross-entropy(source) + alignment term``.
``method`` selects WDGRL or a baseline trained by exactly the same loop (``source_only``,
``dann``, ``coral``), so comparisons differ only in the alignment term.

Model selection never sees target labels: ``patience`` stops on the *source* validation loss
(``val_fraction`` of the source held out) and restores the best such epoch. ``eval_set`` labels,
if given, are only logged (curves), never used for any decision.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.utils import check_random_state
from torch import nn

from wdist import WassersteinCritic
from wdist_apps.runtime import (
    CSVLogger,
    distributed,
    load_checkpoint,
    progress,
    resolve_device,
    rng_state,
    save_checkpoint,
    set_rng_state,
    stop_on_signal,
)
from wdist_apps.wdgrl.methods import (
    METHODS,
    Aligner,
    CORALAligner,
    DANNAligner,
    WDGRLAligner,
)
from wdist_apps.wdgrl.networks import make_extractor


class WDGRLClassifier(ClassifierMixin, BaseEstimator):
    """Wasserstein Distance Guided Representation Learning (and baselines in the same harness).

    Parameters (defaults = the paper's Amazon-review setting, except ``lr``, ``critic_lr``,
    ``standardize`` and ``min_steps``: chosen on generated shifts, see apps/wdgrl/README.md)
    ----------
    method : "wdgrl" | "dann" | "coral" | "source_only".
    network : "mlp" (flattens each sample) or "cnn" (samples ``[C, H, W]``).
    hidden : extractor widths (MLP layers; for the CNN, the fully connected layers after the
        convolutions). Paper: [500] (Amazon), [500, 100] (Office-Caltech).
    critic_hidden : hidden widths of the WDGRL critic / DANN domain discriminator (paper: [100]).
    wd_weight : λ, weight of the critic's W1 estimate in the extractor loss (paper: 1; 0.1 Office).
    gp_weight : gradient-penalty weight γ (paper: 10).
    n_critic : critic steps per extractor step (paper: 5; 10 Office).
    lr, critic_lr : Adam learning rates of extractor+classifier and of the critic (default 1e-3;
        paper: 1e-4, 1e-4; Office critic 1e-3).
    weight_decay : L2 on the extractor/classifier weights, biases excluded (paper: 1e-4).
    batch_size : samples per domain per step (paper: 32 source + 32 target).
    epochs : passes over the source training set (at least; see ``min_steps``).
    patience : early stopping on the source validation loss: stop after ``patience`` epochs
        without improvement and restore the best epoch (None: train all epochs, keep last).
    val_fraction : share of the source held out for validation (0 allowed when patience is None).
    dann_weight, coral_weight : weight of the DANN / CORAL term; ``coral_weight=None`` is the
        weight of WDGRL's own CORAL baseline, ``0.01 l2_loss(C_s - C_t) = 0.005 ||C_s - C_t||^2``,
        i.e. ``0.02 k^2`` for our ``||C_s - C_t||^2 / (4 k^2)`` over ``k`` features.
    standardize : "domain_isotropic" (default), "domain", "joint" or None. "domain_isotropic":
        each domain's inputs are centred by their own mean and divided by one number, their own
        root-mean-square standard deviation, so a rotation or a shear between the domains keeps
        its shape; "domain": centred and scaled per feature by the domain's own mean and
        standard deviation (which distorts a rotated domain); the source's statistics for ``X``,
        the target's for ``X_target``, and :meth:`predict` / :meth:`transform` use the target's
        unless ``domain="source"``; "joint": one mean and deviation per feature over both
        domains; None: inputs as given. For ``network="cnn"`` the statistics are per channel.
    min_steps : train at least this many extractor steps: ``max(epochs, ceil(min_steps /
        steps_per_epoch))`` epochs, so small data sets still get a usable number of updates.
    random_state : int, ``numpy.random.RandomState``, ``numpy.random.Generator`` or None (as in
        scikit-learn): seeds initialisation, batching and the penalty's interpolates through a
        generator of the estimator's own; ``fit`` leaves torch's global random state as it found
        it (deterministic on CPU for an int).
    device : "auto", "cpu", "cuda" or a torch.device.
    verbose : show a progress bar over epochs.
    """

    def __init__(
        self, *, method: str = "wdgrl", network: str = "mlp", hidden: Sequence[int] = (500,),
        critic_hidden: Sequence[int] = (100,), wd_weight: float = 1.0, gp_weight: float = 10.0,
        n_critic: int = 5, lr: float = 1e-3, critic_lr: float = 1e-3, weight_decay: float = 1e-4,
        batch_size: int = 32, epochs: int = 20, patience: int | None = None,
        val_fraction: float = 0.1, dann_weight: float = 1.0, coral_weight: float | None = None,
        standardize: str | None = "domain_isotropic", min_steps: int = 500,
        random_state: int | np.random.RandomState | np.random.Generator | None = None,
        device: str | torch.device = "auto", verbose: bool = False,
    ) -> None:
        self.method = method
        self.network = network
        self.hidden = hidden
        self.critic_hidden = critic_hidden
        self.wd_weight = wd_weight
        self.gp_weight = gp_weight
        self.n_critic = n_critic
        self.lr = lr
        self.critic_lr = critic_lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.dann_weight = dann_weight
        self.coral_weight = coral_weight
        self.standardize = standardize
        self.min_steps = min_steps
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import TransformerTags

        tags = super().__sklearn_tags__()
        tags.transformer_tags = TransformerTags(preserves_dtype=["float32"])  # transform()
        return tags

    # ------------------------------------------------------------------ fit
    def fit(
        self, X: Any, y: Any, X_target: Any = None, *, eval_set: tuple[Any, Any] | None = None,
        checkpoint: str | Path | None = None, resume: bool = False,
        log_csv: str | Path | None = None,
    ) -> WDGRLClassifier:
        """Train on labelled source ``(X, y)`` and unlabelled ``X_target``.

        X, X_target : arrays or tensors ``[n, ...]`` with the same per-sample shape.
            ``X_target=None``: no target data, the source is its own target (plain supervised
            training; the alignment term then only sees source against source).
        y : ``[n]`` class labels (any hashable values, at least two classes).
        eval_set : optional ``(X, y)`` of labelled target data, only logged as ``target_acc``.
        checkpoint : file rewritten atomically after every epoch; with ``resume=True`` training
            continues from it (same seed -> the same final model as an uninterrupted run). The
            checkpoint must come from the same parameters (``epochs``, except for DANN,
            ``verbose`` and ``device`` may change) and the same data, else ``ValueError`` names
            what differs. A missing file starts a fresh run, which then writes it. On SIGINT /
            SIGTERM the epoch under way finishes and is checkpointed, then
            :class:`~wdist_apps.runtime.Interrupted` is raised.
        log_csv : one row per epoch (see :attr:`history_`); on resume it is rewritten from the
            checkpoint's history, so it always matches the checkpoint.
        """
        self._check_params()
        seed = _seed_from(self.random_state)
        device = resolve_device(self.device)
        # torch's global generators (initialisation, the penalty's interpolates) are forked:
        # seeded here, restored on exit, so fit leaves the caller's random state untouched
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda, device_type=device.type):
            torch.manual_seed(seed)
            return self._fit(X, y, X_target, seed, device, eval_set=eval_set,
                             checkpoint=checkpoint, resume=resume, log_csv=log_csv)

    def _fit(
        self, X: Any, y: Any, X_target: Any, seed: int, device: torch.device, *,
        eval_set: tuple[Any, Any] | None, checkpoint: str | Path | None, resume: bool,
        log_csv: str | Path | None,
    ) -> WDGRLClassifier:
        Xs = _as_array(X, "X")
        Xt = Xs if X_target is None else _as_array(X_target, "X_target")
        if Xt.shape[1:] != Xs.shape[1:]:
            raise ValueError(
                f"X_target samples have shape {Xt.shape[1:]} but X samples have {Xs.shape[1:]}; "
                "source and target must share the feature space"
            )
        ys_raw = _as_labels(y, len(Xs), "y")
        self.classes_, ys = np.unique(ys_raw, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y must contain at least two classes, got only one class: "
                             f"{self.classes_!r}")
        self.input_shape_ = tuple(Xs.shape[1:])
        self.n_features_in_ = int(np.prod(self.input_shape_))
        self.scalers_ = fit_scalers(Xs, Xt, self.standardize, per_channel=self.network == "cnn")
        eval_xy = None
        if eval_set is not None:
            if not isinstance(eval_set, (tuple, list)) or len(eval_set) != 2:
                raise ValueError("eval_set must be a pair (X_eval, y_eval) of labelled target "
                                 f"data, got {type(eval_set).__name__}")
            Xe = _as_array(eval_set[0], "eval_set[0]")
            if Xe.shape[1:] != Xs.shape[1:]:
                raise ValueError(f"eval_set[0] samples have shape {Xe.shape[1:]} but X samples "
                                 f"have {Xs.shape[1:]}")
            ye = self._encode(_as_labels(eval_set[1], len(Xe), "eval_set[1]"))
            eval_xy = (_scale(Xe, self.scalers_["target"]), ye)

        fingerprint = _fingerprint(Xs, ys, Xt)
        Xs, Xt = _scale(Xs, self.scalers_["source"]), _scale(Xt, self.scalers_["target"])
        np_rng = np.random.default_rng(seed)
        perm = np_rng.permutation(len(Xs))
        n_val = int(round(self.val_fraction * len(Xs)))
        if len(Xs) - n_val < 1:
            raise ValueError(f"val_fraction={self.val_fraction} leaves no source training data")
        tr, va = perm[n_val:], perm[:n_val]
        xs = torch.from_numpy(Xs[tr]).to(device)
        ys_t = torch.from_numpy(ys[tr]).to(device)
        xt = torch.from_numpy(Xt).to(device)
        val = (torch.from_numpy(Xs[va]).to(device), torch.from_numpy(ys[va]).to(device))
        steps = math.ceil(len(xs) / self.batch_size)
        if distributed.is_distributed():  # no rank may get an empty part of a last, short batch
            distributed.shard(self.batch_size)  # equal parts: a ValueError otherwise
            steps = max(1, len(xs) // self.batch_size)
        self.n_epochs_ = max(self.epochs, math.ceil(self.min_steps / steps))

        self.extractor_ = make_extractor(self.network, self.input_shape_, list(self.hidden))
        self.extractor_.to(device)
        self.head_ = nn.Linear(self.extractor_.out_dim, len(self.classes_)).to(device)
        self.aligner_ = self._make_aligner(self.extractor_.out_dim, device)
        modules = [self.extractor_, self.head_]
        params = [p for m in modules for p in m.parameters()] + self.aligner_.parameters()
        decay = [p for p in params if p.dim() > 1]
        no_decay = [p for p in params if p.dim() <= 1]
        opt = torch.optim.Adam(
            [{"params": decay, "weight_decay": self.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=self.lr,
        )
        # under torchrun: the same global batches on every rank (``gen``), each rank its part,
        # every update's gradients averaged over the ranks, the penalty's draws per rank
        distributed.sync_grads(opt)
        if isinstance(getattr(self.aligner_, "critic", None), WassersteinCritic):
            distributed.sync_grads(self.aligner_.critic.optimizer)
        distributed.seed_rank_streams(seed)
        gen = torch.Generator().manual_seed(seed)
        self.history_: list[dict[str, float]] = []
        best: dict[str, Any] = {"loss": math.inf, "epoch": -1, "state": None, "bad": 0}
        start = 0
        if resume and checkpoint is not None and Path(checkpoint).is_file():
            ck = load_checkpoint(checkpoint, map_location=device)
            self._check_resumable(ck, fingerprint, checkpoint)
            self.extractor_.load_state_dict(ck["extractor"])
            self.head_.load_state_dict(ck["head"])
            self.aligner_.load_state_dict(ck["aligner"])
            opt.load_state_dict(ck["optimizer"])
            gen.set_state(ck["generator"].cpu())
            set_rng_state(ck.get("rng", ck))
            self.history_, best, start = ck["history"], ck["best"], ck["epoch"]
            if ck["stopped"]:  # early-stopped: nothing left to train
                start = self.n_epochs_
        logger = CSVLogger(log_csv) if log_csv else None
        if logger:  # rewritten from the checkpoint's history, so the CSV always matches it
            for row in self.history_:
                logger.log(row)

        quiet = {} if self.verbose else {"disable": True}
        bar = progress(range(start, self.n_epochs_), total=self.n_epochs_, initial=start,
                       desc=self.method, **quiet)
        # a signal stops after the epoch under way and its checkpoint (nothing to save without one)
        with stop_on_signal(enabled=checkpoint is not None) as stop_signal, \
                logger or contextlib.nullcontext():
            for epoch in bar:
                t0 = time.perf_counter()
                row = self._train_epoch(xs, ys_t, xt, opt, gen, epoch, steps)
                row.update(self._evaluate(val, eval_xy, device))
                row["epoch"] = epoch + 1
                row["seconds"] = time.perf_counter() - t0
                self.history_.append(row)
                stop = self._early_stopping(best, row, epoch)
                if self.verbose:
                    bar.set_postfix(clf=f"{row['clf_loss']:.3f}", w1=f"{row['w1']:.3f}",
                                    val=f"{row['source_val_acc']:.3f}")
                if checkpoint is not None:
                    save_checkpoint({
                        "extractor": self.extractor_.state_dict(), "head": self.head_.state_dict(),
                        "aligner": self.aligner_.state_dict(), "optimizer": opt.state_dict(),
                        "generator": gen.get_state(), "rng": rng_state(),
                        "history": self.history_, "best": best, "epoch": epoch + 1,
                        "stopped": stop,
                        "params": self.get_params(), "fingerprint": fingerprint,
                    }, checkpoint)
                if logger:  # after the checkpoint: an interrupt cannot log a row twice
                    logger.log(row)
                stop_signal.check(f"after epoch {epoch + 1}, checkpoint {checkpoint}")
                if stop:
                    break
        if self.patience is not None and best["state"] is not None:
            self.extractor_.load_state_dict(best["state"]["extractor"])
            self.head_.load_state_dict(best["state"]["head"])
        self.best_epoch_ = best["epoch"] + 1 if self.patience is not None else len(self.history_)
        return self

    def _train_epoch(self, xs, ys, xt, opt, gen, epoch, steps) -> dict[str, float]:
        self.extractor_.train()
        bs = self.batch_size
        src = torch.randperm(len(xs), generator=gen)
        reps = math.ceil(steps * bs / len(xt))
        tgt = torch.cat([torch.randperm(len(xt), generator=gen) for _ in range(reps)])
        sums = {"clf_loss": 0.0, "align_loss": 0.0, "w1": 0.0}
        for i in range(steps):
            bi = src[i * bs : (i + 1) * bs].to(xs.device)
            ti = tgt[i * bs : i * bs + len(bi)].to(xs.device)
            bi, ti = distributed.split(bi), distributed.split(ti)
            h = self.extractor_(torch.cat([xs[bi], xt[ti]]))
            h_s, h_t = h[: len(bi)], h[len(bi) :]
            logs = self.aligner_.before_step(h_s, h_t)
            clf = F.cross_entropy(self.head_(h_s), ys[bi])
            align = self.aligner_.loss(h_s, h_t, (epoch + i / steps) / self.n_epochs_)
            opt.zero_grad(set_to_none=True)
            loss = clf + align
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss became {loss.item()} (classification {clf.item()}, "
                    f"alignment {align.item()}) at epoch {epoch + 1}, step {i + 1}, "
                    f"method={self.method!r}; lower lr / critic_lr or the alignment weight"
                )
            loss.backward()
            opt.step()
            sums["clf_loss"] += clf.item()
            sums["align_loss"] += align.item()
            sums["w1"] += logs.get("w1", float("nan"))
        return {k: v / steps for k, v in sums.items()}

    @torch.no_grad()
    def _evaluate(self, val, eval_xy, device) -> dict[str, float]:
        self.extractor_.eval()
        out = {"source_val_loss": float("nan"), "source_val_acc": float("nan"),
               "target_acc": float("nan")}
        if len(val[0]):
            logits = self._logits(val[0])
            out["source_val_loss"] = F.cross_entropy(logits, val[1]).item()
            out["source_val_acc"] = (logits.argmax(1) == val[1]).float().mean().item()
        if eval_xy is not None:
            pred = self._logits(torch.from_numpy(eval_xy[0]).to(device)).argmax(1).cpu().numpy()
            known = eval_xy[1] >= 0
            out["target_acc"] = float((pred[known] == eval_xy[1][known]).mean())
        return out

    def _early_stopping(self, best: dict[str, Any], row: dict[str, float], epoch: int) -> bool:
        if self.patience is None:
            return False
        if row["source_val_loss"] < best["loss"]:
            best.update(loss=row["source_val_loss"], epoch=epoch, bad=0, state={
                "extractor": copy.deepcopy(self.extractor_.state_dict()),
                "head": copy.deepcopy(self.head_.state_dict()),
            })
            return False
        best["bad"] += 1
        return best["bad"] > self.patience

    def _make_aligner(self, feat_dim: int, device: torch.device) -> Aligner:
        if self.method == "wdgrl":
            return WDGRLAligner(feat_dim, list(self.critic_hidden), self.wd_weight,
                                self.gp_weight, self.n_critic, self.critic_lr, device)
        if self.method == "dann":
            return DANNAligner(feat_dim, list(self.critic_hidden), self.dann_weight, device)
        if self.method == "coral":
            weight = 0.02 * feat_dim**2 if self.coral_weight is None else self.coral_weight
            return CORALAligner(weight)
        return Aligner()

    def _check_resumable(
        self, ck: dict[str, Any], fingerprint: dict[str, Any], path: str | Path
    ) -> None:
        """Raise if checkpoint ``ck`` was written for other parameters or other data."""
        # DANN's reversal coefficient follows the fraction of epochs done: its epochs are fixed
        free = [k for k in _RESUME_FREE if not (k == "epochs" and self.method == "dann")]
        saved = {k: _plain(v) for k, v in ck.get("params", {}).items() if k not in free}
        now = {k: _plain(v) for k, v in self.get_params().items() if k not in free}
        diff = [f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now"
                for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
        old = ck.get("fingerprint", fingerprint)
        diff += [f"{k}: {old.get(k)!r} in the checkpoint, {fingerprint[k]!r} now"
                 for k in fingerprint if old.get(k) != fingerprint[k]]
        if diff:
            raise ValueError(f"cannot resume from {path}: it was written with different "
                             f"settings ({'; '.join(diff)}); use another checkpoint path or "
                             "resume=False")

    def _check_params(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("batch_size", "epochs", "n_critic"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not _is_int(self.min_steps) or self.min_steps < 0:
            raise ValueError(f"min_steps must be a non-negative integer, got {self.min_steps!r}")
        if self.standardize not in STANDARDIZE:
            raise ValueError(f"standardize must be one of {STANDARDIZE}, got {self.standardize!r}")
        for name in ("lr", "critic_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("wd_weight", "gp_weight", "weight_decay", "dann_weight", "coral_weight"):
            if name == "coral_weight" and self.coral_weight is None:
                continue
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        for name in ("hidden", "critic_hidden"):
            v = getattr(self, name)
            if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or not all(
                _is_int(h) and h > 0 for h in v
            ):
                raise ValueError(f"{name} must be a tuple of positive ints (layer widths), "
                                 f"got {v!r}")
        if self.patience is not None:
            if not _is_int(self.patience) or self.patience < 1:
                raise ValueError(f"patience must be a positive int or None, got {self.patience!r}")
            if self.val_fraction == 0:
                raise ValueError("patience needs a source validation set: set val_fraction > 0")

    # ------------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "extractor_"):
            raise NotFittedError("this WDGRLClassifier is not fitted yet; call fit(X, y, X_target)")

    def _prepare(self, X: Any, domain: str) -> torch.Tensor:
        self._check_fitted()
        if domain not in ("source", "target"):
            raise ValueError(f"domain must be 'source' or 'target', got {domain!r}")
        Xa = _as_array(X, "X")
        if Xa.shape[1:] != self.input_shape_:
            raise ValueError(
                f"X samples have shape {Xa.shape[1:]}, but the model was fitted on "
                f"{self.input_shape_} (X has {Xa[0].size} features, but WDGRLClassifier is "
                f"expecting {self.n_features_in_} features as input)"
            )
        Xa = _scale(Xa, self.scalers_[domain])
        return torch.from_numpy(Xa).to(next(self.head_.parameters()).device)

    @torch.no_grad()
    def _features(self, x: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        self.extractor_.eval()
        return torch.cat([self.extractor_(x[i : i + chunk]) for i in range(0, len(x), chunk)])

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_(self._features(x))

    def fit_transform(self, X: Any, y: Any, X_target: Any = None, **fit_params: Any) -> np.ndarray:
        """``fit(X, y, X_target, **fit_params)``, then the features of the source ``X``."""
        return self.fit(X, y, X_target, **fit_params).transform(X, domain="source")

    def transform(self, X: Any, *, domain: str = "target") -> np.ndarray:
        """Learned features ``[n, hidden[-1]]`` (the space where the domains are aligned).

        ``domain`` ("target" or "source"): whose input statistics standardise ``X`` (matters
        only for the per-domain ``standardize`` modes)."""
        return self._features(self._prepare(X, domain)).cpu().numpy()

    @torch.no_grad()
    def predict_proba(self, X: Any, *, domain: str = "target") -> np.ndarray:
        """Class probabilities ``[n, n_classes]``, columns ordered as :attr:`classes_`."""
        return torch.softmax(self._logits(self._prepare(X, domain)), 1).cpu().numpy()

    def predict(self, X: Any, *, domain: str = "target") -> np.ndarray:
        """Predicted labels ``[n]`` (values from :attr:`classes_`); ``X`` from ``domain``."""
        proba = self.predict_proba(X, domain=domain)
        return self.classes_[proba.argmax(1)]

    def _encode(self, labels: np.ndarray) -> np.ndarray:
        """Labels -> class indices; unknown labels -> -1 (ignored by the logged accuracy)."""
        idx = np.searchsorted(self.classes_, labels)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        return np.where(self.classes_[idx] == labels, idx, -1).astype(np.int64)


_RESUME_FREE = ("epochs", "verbose", "device")  # may change between a run and its resume
STANDARDIZE = ("domain", "domain_isotropic", "joint", None)


def fit_scalers(
    Xs: np.ndarray, Xt: np.ndarray, mode: str | None, *, per_channel: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-domain ``(mean, scale)`` for :func:`_scale`: ``x -> (x - mean) / scale``.

    ``mode`` "domain": each domain its own statistics; "domain_isotropic": the same mean, and
    one scale per domain (the root mean square of its per-feature deviations); "joint": both
    domains pooled; None: identity. Statistics per feature (``[1, ...]``, the sample shape), or
    per channel of ``[n, C, H, W]`` images with ``per_channel``. A constant feature gets scale 1.
    """
    axes = (0, 2, 3) if per_channel and Xs.ndim == 4 else (0,)

    def stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = X.mean(axis=axes, keepdims=True, dtype=np.float64)
        scale = X.std(axis=axes, keepdims=True, dtype=np.float64)
        if mode == "domain_isotropic":
            scale = np.full_like(scale, np.sqrt(np.mean(scale**2)))
        scale[scale < 1e-8 * max(1.0, float(np.abs(mean).max()))] = 1.0
        return mean.astype(np.float32), scale.astype(np.float32)

    if mode is None:
        one = (np.zeros((1,) * Xs.ndim, np.float32), np.ones((1,) * Xs.ndim, np.float32))
        return {"source": one, "target": one}
    if mode == "joint":
        both = stats(np.concatenate([Xs, Xt]))
        return {"source": both, "target": both}
    return {"source": stats(Xs), "target": stats(Xt)}


def _scale(X: np.ndarray, mean_scale: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    mean, scale = mean_scale
    return np.ascontiguousarray((X - mean) / scale, dtype=np.float32)


def _seed_from(random_state: Any) -> int:
    """An int seed from scikit-learn's ``random_state`` forms (int, RandomState, Generator,
    None = a fresh seed from numpy's global generator, as ``check_random_state(None)``)."""
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1))
    if _is_int(random_state):
        if not 0 <= random_state < 2**32:
            raise ValueError(f"random_state must be in [0, 2**32), got {random_state!r}")
        return int(random_state)
    try:
        return int(check_random_state(random_state).randint(2**31 - 1))
    except ValueError:
        raise ValueError("random_state must be an int, a numpy RandomState or Generator, or "
                         f"None; got {random_state!r}") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _plain(v: Any) -> Any:
    """Parameter value in a comparable form (tuples and lists of widths compare equal)."""
    return [_plain(x) for x in v] if isinstance(v, (tuple, list)) else v


def _fingerprint(Xs: np.ndarray, ys: np.ndarray, Xt: np.ndarray) -> dict[str, Any]:
    """Shapes and a hash of the training data, stored in checkpoints to refuse a foreign resume."""
    h = hashlib.blake2b(digest_size=16)
    for a in (Xs, ys, Xt):
        h.update(np.ascontiguousarray(a).data)
    return {"X.shape": list(Xs.shape), "X_target.shape": list(Xt.shape),
            "data hash": h.hexdigest()}


def _as_array(X: Any, name: str) -> np.ndarray:
    """numpy/torch/list -> float32 numpy ``[n, ...]`` with a clear error for bad input (worded
    as scikit-learn's own, so its estimator checks recognise them)."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if sp.issparse(X):
        raise TypeError(f"{name}: sparse input is not supported; pass a dense array "
                        "(X.toarray())")
    try:
        A = np.asarray(X)
        if A.dtype.kind == "c":
            raise ValueError(f"Complex data not supported: {name} must be real-valued")
        A = A.astype(np.float32)
    except (TypeError, ValueError) as err:
        if "Complex" in str(err):
            raise
        raise TypeError(f"{name} must be a numeric array or tensor ({err})") from None
    if A.ndim < 2:
        raise ValueError(f"{name} must have shape [n_samples, ...] (at least 2-D), got "
                         f"{A.shape}; Reshape your data with X.reshape(-1, 1) for one feature "
                         "or X.reshape(1, -1) for one sample")
    if len(A) == 0:
        raise ValueError(f"{name} is empty (0 samples); at least one sample is needed")
    if A[0].size == 0:
        raise ValueError(f"{name} has 0 feature(s) (shape={A.shape}) while a minimum of 1 is "
                         "required.")
    if not np.isfinite(A).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(A)


def _as_labels(y: Any, n: int, name: str) -> np.ndarray:
    if y is None:
        raise ValueError(f"WDGRLClassifier requires y to be passed, but the target y is None "
                         f"({name}: one class label per source sample)")
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(f"A column-vector {name} was passed when a 1d array was expected; it is "
                      "raveled", DataConversionWarning, stacklevel=3)
        y = y.ravel()
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name} must have shape [{n}] (one label per sample), got {y.shape}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or infinite labels")
    if y.dtype.kind in "fc" and not np.array_equal(y, np.round(y)):
        raise ValueError(f"Unknown label type: continuous. {name} holds class labels; got "
                         "non-integer floats (a regression target?)")
    return y
