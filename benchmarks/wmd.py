"""Word Mover's Distance: speed against gensim and k-NN classification quality.

    python benchmarks/wmd.py                                  # CPU: pairwise, knn, quality
    python benchmarks/wmd.py --config configs/wmd/gpu.yaml    # GPU: batched Sinkhorn throughput

Parts (``parts:`` in the config):

- ``pairwise``: all-pairs WMD over Lee news sentences: gensim ``KeyedVectors.wmdistance`` in a
  Python loop vs ``WMD.pairwise`` (exact, through ``wdist.emd``) and batched Sinkhorn WMD
  (``wdist.sinkhorn``, debiased and not); max |ours - gensim| and Sinkhorn's relative error.
- ``knn``: k-NN of random Lee sentences among all the others: gensim brute force (a loop over the
  corpus) vs our prefetch-and-prune search; the neighbour lists must be identical.
- ``quality``: k-NN classification error on gensim's ``mini_newsgroup`` (two topics) and
  ``pang_lee_polarity.cor`` (sentiment), repeated stratified k-fold with k picked by
  leave-one-out on each training fold: WMD vs RWMD vs WCD vs bag-of-words cosine, next to the
  values Kusner et al. (2015) report on their eight datasets.
- ``gpu``: batched Sinkhorn WMD throughput (pairs/s) on synthetic documents (needs no gensim).

Writes ``benchmark.{md,json}``, ``quality.{md,json}``, ``wmd_benchmark.png`` and
``gpu_sinkhorn.{md,json}`` (device-tagged) under ``out_dir``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wdist  # noqa: E402
from wdist_apps.runtime import load_config, resolve_device, seed_everything  # noqa: E402
from wdist_apps.runtime.machine import machine_info, versions  # noqa: E402
from wdist_apps.wmd import WMD, Embeddings, knn_vote, tokenize  # noqa: E402


@dataclass
class BenchConfig:
    parts: list[str] = field(default_factory=lambda: ["pairwise", "knn", "quality"])
    out_dir: str = "results/wmd"
    device: str = "cpu"
    threads: int = 1
    seed: int = 0
    repeats: int = 3
    gensim_repeats: int = 1
    sinkhorn_repeats: int = 1
    pairwise_docs: int = 200
    sinkhorn_blur: float = 0.01
    sinkhorn_batch: int = 1024
    knn_queries: int = 20
    k: int = 10
    quality_folds: int = 5
    quality_repeats: int = 10
    quality_ks: list[int] = field(default_factory=lambda: [1, 3, 5, 7, 9, 11, 13, 15, 17, 19])
    gpu_vocab: int = 20000
    gpu_dim: int = 300
    gpu_lengths: list[int] = field(default_factory=lambda: [16, 64, 128])
    gpu_pairs: int = 16384
    gpu_batches: list[int] = field(default_factory=lambda: [256, 1024, 4096])


# Kusner et al. (ICML 2015), k-NN test error (%) on their eight datasets (word2vec, 300-D), as
# reproduced in Table 2 of Huang et al. (NeurIPS 2016, "Supervised Word Mover's Distance"), which
# shares Kusner as an author. Their numbers, not ours: these corpora do not ship offline.
PAPER = {
    "datasets": [
        "BBCSPORT",
        "TWITTER",
        "RECIPE",
        "OHSUMED",
        "CLASSIC",
        "REUTERS",
        "AMAZON",
        "20NEWS",
    ],
    "BOW (cosine)": [20.6, 43.6, 59.3, 61.1, 36.0, 13.9, 28.5, 57.8],
    "WCD": [11.3, 30.7, 49.4, 48.9, 6.6, 4.7, 9.2, 36.2],
    "WMD": [4.6, 28.7, 42.6, 44.5, 2.8, 3.5, 7.4, 26.8],
}


def _median_time(fn, repeats: int, sync=None):
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _machine(device: torch.device) -> dict:
    """``wdist_apps.runtime.machine.machine_info`` (CPU model and cores, torch threads, GPU,
    command) with the device and the versions of the libraries compared here."""
    info = machine_info(str(device))
    info["device"] = str(device)
    info["versions"] = versions(("torch", "numpy", "gensim", "pot"))
    return info


def _lee(cfg: BenchConfig):
    from gensim.models import KeyedVectors

    from wdist_apps.wmd.data import lee_sentences, lee_word2vec

    emb = lee_word2vec(verbose=True)
    kv = KeyedVectors(emb.dim)
    kv.add_vectors(emb.words, np.asarray(emb.vectors))
    docs = [[t for t in tokenize(s) if t in emb] for s in lee_sentences()]
    docs = [d for d in docs if d]  # gensim returns inf for empty documents; we raise
    return emb, kv, docs


def part_pairwise(cfg: BenchConfig, emb: Embeddings, kv, docs: list[list[str]], device) -> dict:
    docs = docs[: cfg.pairwise_docs]
    n = len(docs)
    iu = np.triu_indices(n, k=1)

    def gensim_all():
        out = np.zeros((n, n))
        for i, j in zip(*iu):
            out[i, j] = out[j, i] = kv.wmdistance(docs[i], docs[j])
        return out

    t_gensim, ref = _median_time(gensim_all, cfg.gensim_repeats)
    wmd = WMD(emb, device=device)
    t_exact, exact = _median_time(lambda: wmd.pairwise(docs), cfg.repeats)
    res = {
        "documents": n,
        "pairs": len(iu[0]),
        "mean_unique_words": float(np.mean([len(set(d)) for d in docs])),
        "gensim_s": t_gensim,
        "exact_s": t_exact,
        "exact_speedup": t_gensim / t_exact,
        "exact_max_abs_diff_vs_gensim": float(np.max(np.abs(exact - ref))),
    }
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    for debias in (False, True):
        sk = WMD(
            emb,
            device=device,
            dtype=torch.float32,
            blur=cfg.sinkhorn_blur,
            debias=debias,
            batch_size=cfg.sinkhorn_batch,
        )
        t, approx = _median_time(
            lambda sk=sk: sk.pairwise(docs, method="sinkhorn"), cfg.sinkhorn_repeats, sync
        )
        rel = np.abs(approx[iu] - exact[iu]) / exact[iu]
        tag = "sinkhorn_debiased" if debias else "sinkhorn"
        res[f"{tag}_s"] = t
        res[f"{tag}_speedup"] = t_gensim / t
        res[f"{tag}_median_rel_err"] = float(np.median(rel))
        res[f"{tag}_max_rel_err"] = float(np.max(rel))
    return res


def part_knn(cfg: BenchConfig, emb: Embeddings, kv, docs: list[list[str]], device) -> dict:
    rng = np.random.default_rng(cfg.seed)
    qi = rng.choice(len(docs), size=cfg.knn_queries, replace=False)
    rest = np.setdiff1d(np.arange(len(docs)), qi)
    queries = [docs[i] for i in qi]
    corpus = [docs[i] for i in rest]
    k = cfg.k

    def gensim_knn():
        ind = np.empty((len(queries), k), dtype=np.int64)
        dist = np.empty((len(queries), k))
        for q, doc in enumerate(queries):
            d = np.array([kv.wmdistance(doc, c) for c in corpus])
            top = np.lexsort((np.arange(len(corpus)), d))[:k]
            ind[q], dist[q] = top, d[top]
        return dist, ind

    t_gensim, (g_dist, g_ind) = _median_time(gensim_knn, cfg.gensim_repeats)
    wmd = WMD(emb, device=device)
    t_ours, (o_dist, o_ind) = _median_time(lambda: wmd.knn(queries, corpus, k), cfg.repeats)
    return {
        "queries": len(queries),
        "corpus": len(corpus),
        "k": k,
        "gensim_s": t_gensim,
        "prune_s": t_ours,
        "prune_speedup": t_gensim / t_ours,
        "identical_neighbours": bool(np.array_equal(o_ind, g_ind)),
        "max_abs_distance_diff": float(np.max(np.abs(o_dist - g_dist))),
        "exact_wmd_evaluations": wmd.search_stats_["exact"],
        "pruned_by_rwmd": wmd.search_stats_["pruned_rwmd"],
        "skipped_by_wcd": wmd.search_stats_["skipped_wcd"],
        "exact_fraction": wmd.search_stats_["exact"] / (len(queries) * len(corpus)),
    }


def _cv_error(D: np.ndarray, y: np.ndarray, cfg: BenchConfig) -> dict:
    from sklearn.model_selection import StratifiedKFold

    def predict(Dsub: np.ndarray, ytrain: np.ndarray, k: int) -> np.ndarray:
        cols = np.broadcast_to(np.arange(Dsub.shape[1]), Dsub.shape)
        order = np.lexsort((cols, Dsub), axis=1)[:, :k]
        return knn_vote(ytrain[order])

    errors, chosen = [], []
    for r in range(cfg.quality_repeats):
        skf = StratifiedKFold(cfg.quality_folds, shuffle=True, random_state=cfg.seed + r)
        for train, test in skf.split(D, y):
            Dtr = D[np.ix_(train, train)].copy()
            np.fill_diagonal(Dtr, np.inf)  # leave-one-out on the training fold
            loo = [np.mean(predict(Dtr, y[train], k) != y[train]) for k in cfg.quality_ks]
            k = cfg.quality_ks[int(np.argmin(loo))]
            chosen.append(k)
            errors.append(np.mean(predict(D[np.ix_(test, train)], y[train], k) != y[test]))
    return {
        "error_pct": 100 * float(np.mean(errors)),
        "std_pct": 100 * float(np.std(errors)),
        "median_k": float(np.median(chosen)),
    }


def _quality_one(cfg: BenchConfig, emb: Embeddings, device, texts, labels) -> dict:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.metrics.pairwise import cosine_distances

    toks = [tokenize(t) for t in texts]
    keep = [i for i, t in enumerate(toks) if any(w in emb for w in t)]
    toks = [toks[i] for i in keep]
    y = np.array([labels[i] for i in keep])
    wmd = WMD(emb, device=device)
    bow = CountVectorizer(analyzer=lambda doc: doc).fit_transform(toks)
    matrices = {
        "BOW (cosine)": cosine_distances(bow),
        "WCD": wmd.wcd(toks, toks),
        "RWMD": wmd.rwmd(toks, toks),
        "WMD": wmd.pairwise(toks),
    }
    return {
        "documents": len(keep),
        "dropped_empty": len(texts) - len(keep),
        "mean_unique_words": float(np.mean([len(set(t) & set(emb.index)) for t in toks])),
        "results": {name: _cv_error(D, y, cfg) for name, D in matrices.items()},
    }


def part_quality(cfg: BenchConfig, emb: Embeddings, device) -> dict:
    from wdist_apps.wmd.data import mini_newsgroups, polarity

    return {
        "datasets": {
            "mini_newsgroup (alt.atheism vs sci.space, 200 posts, headers removed)": _quality_one(
                cfg, emb, device, *mini_newsgroups()
            ),
            "pang_lee_polarity.cor (pos vs neg, 200 review sentences)": _quality_one(
                cfg, emb, device, *polarity()
            ),
        },
        "protocol": f"{cfg.quality_repeats} x stratified {cfg.quality_folds}-fold CV; k in "
        f"{cfg.quality_ks} chosen by leave-one-out error on each training fold",
        "paper": PAPER,
    }


def part_gpu(cfg: BenchConfig, device) -> dict:
    gen = np.random.default_rng(cfg.seed)
    words = [f"w{i}" for i in range(cfg.gpu_vocab)]
    emb = Embeddings(words, gen.normal(size=(cfg.gpu_vocab, cfg.gpu_dim)).astype(np.float32))
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    rows = []
    for length in cfg.gpu_lengths:

        def docs(n, length=length):
            return [
                [words[i] for i in gen.choice(cfg.gpu_vocab, length, replace=False)]
                for _ in range(n)
            ]

        wmd0 = WMD(emb)
        A, B = wmd0.transform(docs(cfg.gpu_pairs)), wmd0.transform(docs(cfg.gpu_pairs))
        n_check = min(64, cfg.gpu_pairs)
        exact = wmd0.paired(A.subset(range(n_check)), B.subset(range(n_check)))  # CPU, POT
        for batch in cfg.gpu_batches:
            wmd = WMD(
                emb,
                device=device,
                dtype=torch.float32,
                blur=cfg.sinkhorn_blur,
                debias=False,
                batch_size=batch,
            )
            wmd.paired(A.subset(range(batch)), B.subset(range(batch)), method="sinkhorn")  # warm
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)

            def run(w=wmd, A=A, B=B):
                return w.paired(A, B, method="sinkhorn")

            t, approx = _median_time(run, cfg.repeats, sync)
            rel = np.abs(approx[:n_check] - exact) / exact
            row = {
                "words_per_doc": length,
                "batch": batch,
                "pairs": cfg.gpu_pairs,
                "seconds": t,
                "pairs_per_s": cfg.gpu_pairs / t,
                "max_rel_err_vs_exact": float(rel.max()),
            }
            if device.type == "cuda":
                row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
            rows.append(row)
            print(row, flush=True)
    # the search on this device (bounds here, exact WMD through POT on the CPU) vs brute force
    queries, corpus = docs(5, length=16), docs(400, length=16)
    _, ind = WMD(emb, device=device).knn(queries, corpus, k=5)
    _, ref = WMD(emb).knn(queries, corpus, k=5, method="brute")
    return {
        "dim": cfg.gpu_dim,
        "blur": cfg.sinkhorn_blur,
        "dtype": "float32",
        "rows": rows,
        "knn_identical_to_cpu_brute_force": bool(np.array_equal(ind, ref)),
    }


def _fmt_s(x: float) -> str:
    return f"{x:.3g} s"


def write_speed(out: Path, info: dict, res: dict) -> None:
    vers = info["versions"]
    lines = [
        "# WMD speed: ours vs gensim `KeyedVectors.wmdistance`",
        "",
        f"Machine: {info['cpu']} ({info['cpu_cores']} cores; {info['device']}, torch threads "
        f"{res['threads']}); torch {vers['torch']}, gensim {vers['gensim']}, POT {vers['pot']}.",
        f"Command: `{info['command']}`",
        "",
        "Embeddings: word2vec (100-D) trained by `wdist_apps.wmd.data.lee_word2vec()` on gensim's "
        "Lee corpus; documents: Lee news sentences, scikit-learn stop words removed.",
        "",
    ]
    if "pairwise" in res:
        p = res["pairwise"]
        lines += [
            f"## All-pairs WMD: {p['documents']} documents, {p['pairs']} pairs "
            f"({p['mean_unique_words']:.1f} distinct words per document)",
            "",
            "| method | time | vs gensim | accuracy |",
            "|---|---|---|---|",
            f"| gensim `wmdistance` loop | {_fmt_s(p['gensim_s'])} | 1x | reference |",
            f"| ours, exact (`wdist` network simplex) | {_fmt_s(p['exact_s'])} | "
            f"{p['exact_speedup']:.1f}x | max abs diff {p['exact_max_abs_diff_vs_gensim']:.1e} |",
            f"| ours, batched Sinkhorn (blur {res['blur']}) | {_fmt_s(p['sinkhorn_s'])} | "
            f"{p['sinkhorn_speedup']:.1f}x | rel. err median {p['sinkhorn_median_rel_err']:.2%},"
            f" max {p['sinkhorn_max_rel_err']:.2%} |",
            f"| ours, batched Sinkhorn debiased | {_fmt_s(p['sinkhorn_debiased_s'])} | "
            f"{p['sinkhorn_debiased_speedup']:.1f}x | rel. err median "
            f"{p['sinkhorn_debiased_median_rel_err']:.2%}, max "
            f"{p['sinkhorn_debiased_max_rel_err']:.2%} |",
            "",
        ]
    if "knn" in res:
        q = res["knn"]
        lines += [
            f"## {q['k']}-NN search: {q['queries']} queries x {q['corpus']} documents",
            "",
            "| method | time | vs gensim | neighbours |",
            "|---|---|---|---|",
            f"| gensim `wmdistance` brute force | {_fmt_s(q['gensim_s'])} | 1x | reference |",
            f"| ours, prefetch-and-prune (exact) | {_fmt_s(q['prune_s'])} | "
            f"**{q['prune_speedup']:.1f}x** | identical: {q['identical_neighbours']} "
            f"(max distance diff {q['max_abs_distance_diff']:.1e}) |",
            "",
            f"Exact WMD was evaluated for {q['exact_wmd_evaluations']} of "
            f"{q['queries'] * q['corpus']} (query, document) pairs "
            f"({q['exact_fraction']:.2%}); {q['pruned_by_rwmd']} were pruned by RWMD and "
            f"{q['skipped_by_wcd']} skipped by WCD.",
            "",
        ]
    lines.append(
        f"Medians of {res['repeats']} runs (ours, exact), {res['sinkhorn_repeats']} (ours, "
        f"Sinkhorn) and {res['gensim_repeats']} (gensim). Sinkhorn runs in float32, exact in "
        "float64."
    )
    (out / "benchmark.md").write_text("\n".join(lines) + "\n")


def write_quality(out: Path, info: dict, q: dict) -> None:
    names = list(next(iter(q["datasets"].values()))["results"])
    lines = [
        "# k-NN document classification error (%)",
        "",
        f"Ours, on the labelled text gensim ships (test data). {q['protocol']}. Embeddings: "
        "100-D word2vec trained by `wdist_apps.wmd.data.lee_word2vec()` on the Lee corpus plus "
        "these texts (labels unused). Mean +- std over folds; median chosen k in brackets.",
        f"Command: `{info['command']}`",
        "",
        "| dataset | docs (distinct words) | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for dname, d in q["datasets"].items():
        cells = [
            f"{r['error_pct']:.1f} +- {r['std_pct']:.1f} (k={r['median_k']:g})"
            for r in d["results"].values()
        ]
        lines.append(
            f"| {dname} | {d['documents']} ({d['mean_unique_words']:.0f}) | "
            + " | ".join(cells)
            + " |"
        )
    p = q["paper"]
    lines += [
        "",
        "**Theirs, not ours**: Kusner et al. (ICML 2015) k-NN test error (%) on the "
        "eight datasets we cannot ship offline (word2vec trained on Google News), as "
        "reproduced in Table 2 of Huang et al. (NeurIPS 2016, Supervised WMD):",
        "",
        "| distance | " + " | ".join(p["datasets"]) + " |",
        "|---|" + "---|" * len(p["datasets"]),
    ]
    for name in ("BOW (cosine)", "WCD", "WMD"):
        lines.append(f"| {name} | " + " | ".join(f"{v:g}" for v in p[name]) + " |")
    (out / "quality.md").write_text("\n".join(lines) + "\n")


def plot(out: Path, res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [key for key in ("pairwise", "knn", "quality") if key in res]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.6), squeeze=False)
    for ax, key in zip(axes[0], panels):
        r = res[key]
        if key == "pairwise":
            names = ["gensim", "ours exact", "ours Sinkhorn"]
            vals = [r["gensim_s"], r["exact_s"], r["sinkhorn_s"]]
            ax.set_title(f"all-pairs WMD ({r['pairs']} pairs)")
        elif key == "knn":
            names = ["gensim brute", "ours prune"]
            vals = [r["gensim_s"], r["prune_s"]]
            ax.set_title(f"{r['k']}-NN, {r['queries']} queries x {r['corpus']} docs")
        else:
            sets = list(r["datasets"].items())
            names = list(sets[0][1]["results"])
            width = 0.8 / len(sets)
            for s, (dname, d) in enumerate(sets):
                vals = [d["results"][n]["error_pct"] for n in names]
                ax.bar(np.arange(len(names)) + s * width, vals, width, label=dname.split(" (")[0])
            ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
            ax.set_ylabel("k-NN error %")
            ax.set_title("classification error (CV)")
            ax.set_ylim(0, 75)
            ax.legend(fontsize=7, loc="upper center")
            continue
        bars = ax.bar(names, vals, color=["tab:gray"] + ["tab:blue"] * (len(vals) - 1))
        for bar, v in zip(bars, vals):
            ax.annotate(
                f"{v:.3g} s\n{vals[0] / v:.1f}x",
                (bar.get_x() + bar.get_width() / 2, v),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_ylim(0, 1.25 * max(vals))
        ax.set_ylabel("seconds (lower is better)")
    fig.tight_layout()
    fig.savefig(out / "wmd_benchmark.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/wmd/benchmark.yaml")
    parser.add_argument("--parts", nargs="+", help="override the config's parts")
    parser.add_argument("--device", help="override the config's device")
    parser.add_argument("--out-dir", help="override the config's out_dir")
    args = parser.parse_args(argv)
    cfg = load_config(
        BenchConfig,
        args.config,
        {"parts": args.parts, "device": args.device, "out_dir": args.out_dir},
    )
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = _machine(device)
    print(f"wdist {wdist.__name__} on {info['device']} ({info['cpu']})")
    if "gpu" in cfg.parts:
        g = part_gpu(cfg, device)
        tag = "gpu" if device.type == "cuda" else "cpu"
        (out / f"{tag}_sinkhorn.json").write_text(json.dumps({"machine": info, **g}, indent=2))
        lines = [
            f"# Batched Sinkhorn WMD throughput ({info['gpu'] or info['cpu']})",
            "",
            f"Synthetic unit-norm {g['dim']}-D word vectors, random documents, blur "
            f"{g['blur']}, {g['dtype']}, debias=False. torch {info['versions']['torch']}.",
            f"Command: `{info['command']}`",
            "",
            "| words per doc | pairs per call | pairs/s | max rel. err vs exact | peak GPU mem |",
            "|---|---|---|---|---|",
        ]
        for r in g["rows"]:
            mem = f"{r['peak_mem_gib']:.2f} GiB" if "peak_mem_gib" in r else "-"
            lines.append(
                f"| {r['words_per_doc']} | {r['batch']} | {r['pairs_per_s']:,.0f} | "
                f"{r['max_rel_err_vs_exact']:.2%} | {mem} |"
            )
        lines += [
            "",
            "Relative error: the first 64 pairs of each setting against exact WMD (POT, CPU). "
            "k-NN search with its bounds on this device returned brute force's neighbours: "
            f"{g['knn_identical_to_cpu_brute_force']}.",
        ]
        (out / f"{tag}_sinkhorn.md").write_text("\n".join(lines) + "\n")
    res: dict = {
        "threads": cfg.threads,
        "repeats": cfg.repeats,
        "gensim_repeats": cfg.gensim_repeats,
        "sinkhorn_repeats": cfg.sinkhorn_repeats,
        "blur": cfg.sinkhorn_blur,
    }
    if {"pairwise", "knn", "quality"} & set(cfg.parts):
        emb, kv, docs = _lee(cfg)
        if "pairwise" in cfg.parts:
            res["pairwise"] = part_pairwise(cfg, emb, kv, docs, device)
            print(json.dumps(res["pairwise"], indent=1), flush=True)
        if "knn" in cfg.parts:
            res["knn"] = part_knn(cfg, emb, kv, docs, device)
            print(json.dumps(res["knn"], indent=1), flush=True)
        if "pairwise" in res or "knn" in res:
            write_speed(out, info, res)
            (out / "benchmark.json").write_text(
                json.dumps({"machine": info, "config": asdict(cfg), **res}, indent=2)
            )
        if "quality" in cfg.parts:
            res["quality"] = part_quality(cfg, emb, device)
            print(json.dumps(res["quality"]["datasets"], indent=1), flush=True)
            write_quality(out, info, res["quality"])
            (out / "quality.json").write_text(
                json.dumps({"machine": info, "config": asdict(cfg), **res["quality"]}, indent=2)
            )
        plot(out, res)
    print(f"results in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
