"""WGAN training throughput at 32x32 per Lipschitz method, ours vs a hand-written PyTorch loop.

    python benchmarks/wgan.py [--device cpu|cuda|auto] [--archs dcgan resnet] [--repeats 5]

For each architecture (DCGAN-32 width 64; the WGAN-GP paper's ResNet-32 width 128) and method
(clip, gp, sn) it times, in one process on the same models and batches:
- ours: ``wdist.WassersteinCritic.step`` (critic update) and ``wdist.generator_loss`` + Adam/RMSProp
  (generator update), exactly what ``wdist_apps.wgan.trainer`` runs;
- peer: the textbook PyTorch loop (what WGAN repositories write by hand: two forward passes,
  ``torch.autograd.grad(..., create_graph=True)`` for GP, ``p.data.clamp_`` for clipping, torch's
  ``spectral_norm`` parametrisation for SN).
Throughput = real images through the critic per second = B * n_critic / (n_critic * t_critic +
t_generator) with each method's paper n_critic; "GP factor" = t_critic(gp) / t_critic(clip), the
cost of the double backward. Medians of ``--repeats`` timings of ``--iters`` steps each. Writes
results/wgan/bench_<device>.{md,json}.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn.utils.parametrizations import spectral_norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wdist  # noqa: E402
from wdist_apps.runtime import resolve_device  # noqa: E402
from wdist_apps.runtime.machine import describe
from wdist_apps.wgan.config import PAPER_DEFAULTS, WGANConfig  # noqa: E402
from wdist_apps.wgan.models import build_models  # noqa: E402
from wdist_apps.wgan.trainer import make_optimizer  # noqa: E402

WIDTHS = {"dcgan": 64, "resnet": 128}


class PeerCritic:
    """The hand-written loop of typical WGAN repositories (the comparison baseline)."""

    def __init__(self, module, method, optimizer, lam=10.0, c=0.01):
        if method == "sn":
            for m in module.modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                    spectral_norm(m)
        self.module, self.method, self.opt, self.lam, self.c = module, method, None, lam, c
        self.opt = optimizer(module.parameters())

    def step(self, real, fake):
        loss = self.module(fake).mean() - self.module(real).mean()
        if self.method == "gp":
            eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
            xh = (eps * real + (1 - eps) * fake).requires_grad_(True)
            (g,) = torch.autograd.grad(self.module(xh).sum(), xh, create_graph=True)
            loss = loss + self.lam * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.method == "clip":
            for p in self.module.parameters():
                p.data.clamp_(-self.c, self.c)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fns, iters, repeats, device):
    """Median seconds per call of each function; repeats interleaved so load drifts hit all."""
    for fn in fns:
        fn()
    _sync(device)
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times):
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            _sync(device)
            out.append((time.perf_counter() - t0) / iters)
    return [statistics.median(t) for t in times]


def bench(arch, method, device, batch, iters, repeats):
    cfg = WGANConfig(data="mnist", arch=arch, lipschitz=method, width=WIDTHS[arch], z_dim=128)
    torch.manual_seed(0)
    gen, critic_module = build_models(arch, (3, 32, 32), 128, cfg.width, cfg.resolved_critic_norm)
    gen = gen.to(device)
    real = torch.rand(batch, 3, 32, 32, device=device) * 2 - 1
    z = torch.randn(batch, 128, device=device)
    with torch.no_grad():
        fake = gen(z)
    opt = lambda p: make_optimizer(cfg, p)  # noqa: E731
    ours = wdist.WassersteinCritic(copy.deepcopy(critic_module).to(device), lipschitz=method,
                                   optimizer=opt)
    peer = PeerCritic(copy.deepcopy(critic_module).to(device), method, opt)
    g_opt = make_optimizer(cfg, gen.parameters())

    def gen_step():
        loss = wdist.generator_loss(ours.module, gen(z))
        g_opt.zero_grad(set_to_none=True)
        loss.backward()
        g_opt.step()

    t_ours, t_peer, t_gen = _time(
        [lambda: ours.step(real, fake), lambda: peer.step(real, fake), gen_step],
        iters, repeats, device)
    n = PAPER_DEFAULTS[method].n_critic
    return {
        "arch": arch, "method": method, "batch": batch, "n_critic": n,
        "critic_step_ms": 1e3 * t_ours, "peer_critic_step_ms": 1e3 * t_peer,
        "ours_over_peer": t_ours / t_peer, "generator_step_ms": 1e3 * t_gen,
        "img_per_s": batch * n / (n * t_ours + t_gen),
        "peer_img_per_s": batch * n / (n * t_peer + t_gen),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--archs", nargs="+", default=["dcgan", "resnet"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=None, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: fastest for small convs on a shared box)")
    parser.add_argument("--out", type=Path, default=Path("results/wgan"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    iters = args.iters or (50 if device.type == "cuda" else 2)
    rows = [bench(a, m, device, args.batch, iters, args.repeats)
            for a in args.archs for m in ("clip", "gp", "sn")]
    for a in args.archs:
        t = {r["method"]: r["critic_step_ms"] for r in rows if r["arch"] == a}
        for r in rows:
            if r["arch"] == a:
                r["critic_cost_vs_clip"] = r["critic_step_ms"] / t["clip"]
    tag = device.type
    meta = {"machine": describe(device), "torch": torch.__version__,
            "python": sys.version.split()[0], "command": "python " + " ".join(sys.argv),
            "iters": iters, "repeats": args.repeats}
    lines = [f"# WGAN training throughput at 32x32 ({tag})", "",
             f"Machine: {meta['machine']}; torch {meta['torch']}; command `{meta['command']}`; "
             f"medians of {args.repeats} x {iters} steps, batch {args.batch}, 3x32x32.", "",
             "img/s = real images through the critic per second with the method's paper "
             "n_critic; critic cost vs clip: the GP row is the double-backward factor; ours/peer: "
             "wdist.WassersteinCritic.step over a hand-written PyTorch step (1.00 = no overhead).",
             "", "| arch | method | n_critic | critic step ms | peer ms | ours/peer | "
             "generator step ms | img/s | critic cost vs clip |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['method']} | {r['n_critic']} | {r['critic_step_ms']:.1f} | "
            f"{r['peer_critic_step_ms']:.1f} | {r['ours_over_peer']:.2f} | "
            f"{r['generator_step_ms']:.1f} | {r['img_per_s']:.0f} | "
            f"{r['critic_cost_vs_clip']:.2f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"bench_{tag}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"bench_{tag}.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
