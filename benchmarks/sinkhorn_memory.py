"""Peak memory of ``wdist.sinkhorn``'s online strategy against n: it must grow linearly.

Each size runs in a fresh subprocess (peak RSS above the pre-solve RSS on CPU, or
``torch.cuda.max_memory_allocated`` on CUDA), with a short ε schedule (blur 0.5, scaling 0.5,
no polish) so that n = 1e5 finishes on a 2-core CPU: memory does not depend on the iteration count.
Writes ``results/core/memory_<device>.md`` and ``.json``.

    python benchmarks/sinkhorn_memory.py [--device cpu|cuda] [--sizes 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wdist_apps.runtime.machine import machine_info, markdown_header, write_report  # noqa: E402

PROBE = """
import sys, time, torch
sys.path.insert(0, {root!r})
import wdist
torch.set_num_threads(1)
n, device = {n}, {device!r}
g = torch.Generator().manual_seed(0)
x = torch.rand(n, 3, generator=g).to(device)
y = (torch.rand(n, 3, generator=g) + 0.25).to(device)
def rss():
    for line in open('/proc/self/status'):
        if line.startswith(('VmRSS', 'VmHWM')):
            yield int(line.split()[1])
if device == 'cuda':
    torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
else:
    open('/proc/self/clear_refs', 'w').write('5'); base = next(rss())
t = time.perf_counter()
val = wdist.sinkhorn(x, y, blur=0.5, scaling=0.5, tol=None, backend='online').item()
secs = time.perf_counter() - t
if device == 'cuda':
    torch.cuda.synchronize(); peak = (torch.cuda.max_memory_allocated() - base) / 2**20
else:
    peak = (list(rss())[1] - base) / 1024
print(peak, secs, val)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000, 30000, 100000])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "core")
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        code = PROBE.format(root=str(ROOT), n=n, device=args.device)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        peak, secs, val = map(float, out.stdout.split()[-3:])
        input_mb = 2 * n * 3 * 4 / 2**20
        dense_mb = 3 * n * n * 4 / 2**20  # C_xy, C_xx, C_yy in float32
        rows.append({"n": n, "peak_mb": peak, "seconds": secs, "value": val,
                     "input_mb": input_mb, "dense_cost_mb": dense_mb})
        print(f"n={n}: peak {peak:.0f} MB in {secs:.1f} s (dense costs would need "
              f"{dense_mb:,.0f} MB)", flush=True)
    info = machine_info(args.device)
    info["torch_threads"] = 1  # what each probe process sets (PROBE above)
    lines = [
        f"# Online Sinkhorn memory against n ({args.device})", "",
        markdown_header(info), "",
        "Peak memory of one debiased `wdist.sinkhorn(x, y, blur=0.5, scaling=0.5, tol=None, "
        "backend='online')` solve, 3-D float32 clouds of n points each, fresh process per size. "
        "The online strategy streams the cost in row chunks of a fixed number of elements, so "
        "memory is the inputs, the potentials and one chunk: it grows linearly in n.", "",
        "| n | peak MB | seconds | dense cost matrices would need |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['n']:,} | {r['peak_mb']:.0f} | {r['seconds']:.1f} | "
              f"{r['dense_cost_mb']:,.0f} MB |" for r in rows]
    md = write_report(args.out, f"memory_{args.device}", lines, {"machine": info, "rows": rows})
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
