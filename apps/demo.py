"""``wdist demo``: a one-minute tour of the core on CPU, then a short real run of every app.

Writes PNG figures into ``--out`` (default ``runs/demo``, git-ignored) and prints where each file
went.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from wdist_apps.runtime.figures import save_figure

APPS = ("wdgrl", "qrdqn", "wgan", "wmd")


def register(sub: argparse._SubParsersAction) -> None:
    from wdist_apps.runtime.device import add_device_arg

    # CPU time measured on a 2-core AMD EPYC: 31 s, 43 s on the first run (which trains the WMD
    # demo's word2vec model once and caches it); a busy machine stretches the wall time
    parser = sub.add_parser(
        "demo", help="a short tour of the core and of every app (about 30 s of CPU; 45 s the "
        "first time, which trains and caches a small word2vec model)",
        description="A short tour of the core and of every app, on data that ships inside the "
        "installed packages. It prints where each figure went (default: runs/demo).",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"),
                        help="output folder (default: runs/demo)")
    parser.add_argument(
        "--apps",
        nargs="*",
        default=list(APPS),
        choices=APPS,
        help="which apps to include (default: all)",
    )
    add_device_arg(parser)
    parser.set_defaults(func=run)


def disjoint_support_figure(path: Path) -> Path:
    """W1 vs KL and JS between Diracs at 0 and theta: the WGAN paper's motivating example."""
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    import wdist

    thetas = torch.linspace(-1, 1, 201, dtype=torch.float64)
    w1, grad = [], []
    for t in thetas:
        t = t.clone().requires_grad_(True)
        w = wdist.wasserstein_1d(torch.zeros(1, dtype=torch.float64), t[None])
        (g,) = torch.autograd.grad(w, t)
        w1.append(w.item())
        grad.append(g.item())
    th = thetas.numpy()
    js = np.where(th == 0, 0.0, np.log(2))
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot(th, w1, label=r"$W_1 = |\theta|$")
    ax[0].plot(th, js, label=r"JS $= \log 2$ ($\theta \neq 0$)")
    ax[0].plot(th, np.where(th == 0, 0, 1.9), ls=":", label=r"KL $= \infty$ ($\theta \neq 0$)")
    ax[0].set_xlabel(r"$\theta$")
    ax[0].set_title(r"distance between $\delta_0$ and $\delta_\theta$")
    ax[0].legend(fontsize=8)
    ax[1].plot(th, grad, label=r"$\partial W_1 / \partial\theta$ (autograd)")
    ax[1].plot(th, np.zeros_like(th), label=r"$\partial JS / \partial\theta$")
    ax[1].set_xlabel(r"$\theta$")
    ax[1].set_title("gradient: only W1 says which way to move")
    ax[1].legend(fontsize=8)
    return save_figure(fig, path)


def sinkhorn_convergence_figure(path: Path) -> Path:
    """Relative error of the Sinkhorn divergence and of OT_eps against exact EMD, vs blur."""
    import matplotlib.pyplot as plt
    import torch

    import wdist

    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 2, generator=g, dtype=torch.float64)
    y = torch.rand(300, 2, generator=g, dtype=torch.float64) * 0.6 + 0.3
    exact = wdist.emd(x, y, p=2).item()
    blurs = [0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3]
    rel = {True: [], False: []}
    for debias in (True, False):
        for blur in blurs:
            # the value after the epsilon schedule (tol=None): at blur 1e-3 the plan would need
            # more than 2e4 iterations to meet the default tol; the value moves by < 1e-4
            val = wdist.sinkhorn(x, y, p=2, blur=blur, debias=debias, tol=None).item()
            rel[debias].append(abs(val - exact) / exact)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.loglog(blurs, rel[True], "o-", label=r"debiased $S_\varepsilon$")
    ax.loglog(blurs, rel[False], "s-", label=r"entropic $OT_\varepsilon$")
    ax.set_xlabel("blur ($\\varepsilon^{1/p}$)")
    ax.set_ylabel("|sinkhorn - emd| / emd")
    ax.set_title(f"Sinkhorn (tol=None) -> exact $W_2^2$ = {exact:.4f} (n=400, m=300)",
                 fontsize=10)
    ax.invert_xaxis()
    ax.legend()
    save_figure(fig, path)
    print(f"  sinkhorn vs exact: rel. error {rel[True][-1]:.2e} at blur={blurs[-1]}")
    return path


def critic_figure(path: Path, steps: int = 600) -> Path:
    """The dual critic's W1 estimate over training, per Lipschitz method, against exact EMD."""
    import matplotlib.pyplot as plt
    import torch
    from torch import nn

    import wdist

    g = torch.Generator().manual_seed(0)
    real = torch.randn(512, 2, generator=g)
    fake = torch.randn(512, 2, generator=g) * 0.5 + torch.tensor([2.0, 1.0])
    exact = wdist.emd(real, fake, p=1).item()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for method, kw in (("gp", {"lam": 10.0}), ("sn", {}), ("clip", {})):
        torch.manual_seed(1)
        net = nn.Sequential(
            nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)
        )
        opt = (
            None if method == "clip" else (lambda ps: torch.optim.Adam(ps, 1e-3, betas=(0.5, 0.9)))
        )
        critic = wdist.WassersteinCritic(net, method, optimizer=opt, **kw)
        hist = critic.fit(real, fake, steps=steps, batch_size=256, generator=g)
        curve = [h["w1"] for h in hist]
        ax.plot(curve, label=f"{method}: final {curve[-1]:.3f}")
        print(f"  critic ({method}): W1 estimate {curve[-1]:.3f} vs exact {exact:.3f}")
    ax.axhline(exact, color="k", ls="--", label=f"exact W1 (emd) {exact:.3f}")
    ax.set_xlabel("critic step")
    ax.set_ylabel("W1 estimate")
    ax.set_title("Kantorovich-Rubinstein critic vs exact W1")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return path


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from wdist_apps.runtime.device import resolve_device

    device = resolve_device(args.device)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    start = time.time()
    print(f"wdist demo on {device}: core tour")
    torch.set_num_threads(1)  # the tour is many small problems: threads only add sync cost
    written.append(disjoint_support_figure(out / "disjoint_support.png"))
    written.append(sinkhorn_convergence_figure(out / "sinkhorn_vs_exact.png"))
    written.append(critic_figure(out / "critic_vs_exact.png"))
    for name in args.apps:
        try:
            mod = importlib.import_module(f"wdist_apps.{name}.demo")
        except ModuleNotFoundError as err:
            if err.name == f"wdist_apps.{name}":
                print(f"[{name}] not installed in this checkout; skipped")
                continue
            raise
        print(f"[{name}] running its demo ...")
        t0 = time.time()
        files = mod.run(out / name, device)
        print(f"[{name}] done in {time.time() - t0:.0f} s")
        written.extend(files)
    print(f"\nwrote {len(written)} files in {time.time() - start:.0f} s:")
    for path in written:
        print(f"  {path}")
    return 0
