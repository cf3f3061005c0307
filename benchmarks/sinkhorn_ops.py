"""Operations and host syncs per Sinkhorn solve: ours, POT torch, GeomLoss, counted alike.

On a GPU at small n every operation is a kernel launch of a few microseconds, so a solve costs
about (number of operations) x (launch time): the count predicts who is launch-bound, and it can
be measured on any machine. torch's profiler records every ATen operation of one warm solve
(same inputs and settings as ``benchmarks/core.py``: p = 2, ``debias=False``, ours at
``tol = 1e-3``); views, reshapes and dtype/device moves are not counted, since they launch
nothing or the same for everyone. Host syncs (a GPU stall each: the CPU waits for the queue to
drain) are the reads of a tensor's value into Python (``.item()``, ``float()``, ``bool()``,
``.tolist()``). ``wdist fixed work`` is ``tol=None`` with a given ``diameter`` (the points'
bounding box) under ``wdist.set_validation(False)``: the path a CUDA graph can replay.
Writes ``results/core/ops_<device>.md`` and ``.json``.

    python benchmarks/sinkhorn_ops.py [--device cpu|cuda] [--sizes 1000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from core import BLUR, OURS, clouds, sinkhorn_methods  # noqa: E402

from wdist_apps.runtime.machine import machine_info, markdown_header, write_report  # noqa: E402

# ATen events that move or relabel memory rather than compute
_NO_LAUNCH = ("aten::view", "aten::as_strided", "aten::expand", "aten::unsqueeze",
              "aten::squeeze", "aten::transpose", "aten::t", "aten::empty", "aten::resolve",
              "aten::lift", "aten::detach", "aten::alias", "aten::select", "aten::slice",
              "aten::_reshape", "aten::reshape", "aten::to", "aten::_to_copy", "aten::matmul",
              "aten::result_type", "aten::item", "aten::_local_scalar_dense", "aten::flatten",
              "aten::contiguous", "aten::permute", "aten::numpy_T", "aten::mT", "aten::unbind",
              "aten::split", "aten::chunk", "aten::narrow", "aten::_unsafe_view", "aten::zeros")
FIXED = "wdist fixed work"
_METHODS = (OURS, FIXED, "POT torch", "GeomLoss (tensorized)")


def count_ops(fn) -> tuple[int, int]:
    """(compute operations, host syncs: tensor-to-Python reads) of one warm call of ``fn``.
    ``.tolist()`` reads without an ATen event on the CPU: its calls are counted by a patch."""
    fn()  # warm: first-call set-up is not part of a solve
    tolist, reads = torch.Tensor.tolist, [0]

    def counted(t):
        reads[0] += 1
        return tolist(t)

    torch.Tensor.tolist = counted
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
    finally:
        torch.Tensor.tolist = tolist
    events = prof.key_averages()
    ops = sum(e.count for e in events
              if e.key.startswith("aten::") and not e.key.startswith(_NO_LAUNCH))
    syncs = sum(e.count for e in events if e.key == "aten::_local_scalar_dense")
    return ops, syncs + reads[0]


def fixed_work(x: torch.Tensor, y: torch.Tensor, blur: float):
    """``sinkhorn(tol=None, diameter=...)`` without value checks: no host sync."""
    import wdist
    from wdist._checks import point_spread

    diameter = point_spread(x, y)  # a bound a training loop knows in advance

    def run():
        with wdist.set_validation(False):
            return wdist.sinkhorn(x, y, p=2, blur=blur, debias=False, tol=None, diameter=diameter)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "core")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for n in args.sizes:
        for d, blur in BLUR.items():
            x, y = clouds(n, d, args.device)
            methods = sinkhorn_methods(x, y, blur, keops=False)
            methods[FIXED] = (fixed_work(x, y, blur), "dual")
            for name in _METHODS:
                if name in methods:
                    ops, syncs = count_ops(methods[name][0])
                    rows.append({"n": n, "d": d, "method": name, "ops": ops, "syncs": syncs})
                    print(rows[-1], flush=True)
    info = machine_info(args.device)
    lines = [f"# Operations per Sinkhorn solve ({args.device})", "", markdown_header(info), "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             "| n | d | method | operations per solve | host syncs per solve |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['n']:,} | {r['d']} | {r['method']} | {r['ops']:,} | {r['syncs']:,} |"
              for r in rows]
    md = write_report(args.out, f"ops_{args.device}", lines, {"meta": info, "rows": rows})
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
