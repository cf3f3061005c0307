"""A short WMD tour on gensim's bundled Lee news corpus: a k-NN query and a transport plan."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from wdist_apps.runtime.figures import save_figure

QUERY = "Firefighters are fighting bushfires that threaten homes west of Sydney."


def run(out_dir: Path, device: torch.device) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wdist_apps.wmd.data import lee_documents, lee_word2vec
    from wdist_apps.wmd.model import WMD

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    emb = lee_word2vec(verbose=True)
    docs = lee_documents()
    wmd = WMD(emb, device=device)
    t0 = time.perf_counter()
    dist, ind = wmd.knn([QUERY], docs, k=3)
    elapsed = time.perf_counter() - t0
    stats = wmd.search_stats_
    lines = [
        f"WMD query over {len(docs)} Lee news articles ({elapsed:.2f} s, exact WMD on "
        f"{stats['exact']} documents, {stats['pruned_rwmd']} pruned by RWMD, "
        f"{stats['skipped_wcd']} by WCD)",
        f"query: {QUERY}",
    ]
    for rank, (d, i) in enumerate(zip(dist[0], ind[0]), 1):
        lines.append(f"  {rank}. WMD {d:.4f}  doc {i}: {docs[i][:110]}...")
    print("\n".join(lines))
    report = out_dir / "wmd_query.txt"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")

    # the flow between the query and the first sentence of its nearest article
    target = docs[int(ind[0, 0])].split(". ")[0]
    words1, words2, plan, cost = wmd.flow(QUERY, target)
    fig, ax = plt.subplots(figsize=(1.5 + 0.45 * len(words2), 2.0 + 0.4 * len(words1)))
    ax.imshow(plan, cmap="Blues")
    ax.set_xticks(np.arange(len(words2)), words2, rotation=60, ha="right")
    ax.set_yticks(np.arange(len(words1)), words1)
    for i, j in zip(*np.nonzero(plan > 1e-9)):
        ax.text(j, i, f"{plan[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title(f"WMD transport plan (WMD = {cost:.3f})", fontsize=10)
    figure = save_figure(fig, out_dir / "wmd_transport_plan.png")
    print(f"transport plan between the query and '{target[:60]}...' -> {figure}")
    return [report, figure]
