"""``wdist wmd distance|knn|classify``: Word Mover's Distance from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from wdist_apps.runtime import add_device_arg

EMBEDDINGS_HELP = (
    "word2vec (text/binary), GloVe text, gensim KeyedVectors file, a directory saved by "
    "Embeddings.save, or 'lee' for a word2vec model trained on gensim's bundled Lee corpus "
    "(trained once, cached)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "wmd",
        help="Word Mover's Distance between documents, k-NN search and classification",
        description="Word Mover's Distance (Kusner et al., ICML 2015) on the wdist core.",
    )
    sub = parser.add_subparsers(dest="wmd_command", metavar="SUBCOMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--embeddings", required=True, metavar="FILE", help=EMBEDDINGS_HELP)
        p.add_argument(
            "--no-normalize",
            action="store_true",
            help="use raw word vectors (default: unit length, as gensim)",
        )
        p.add_argument(
            "--keep-stop-words",
            action="store_true",
            help="keep English stop words (default: drop scikit-learn's list)",
        )
        p.add_argument("--idf", action="store_true", help="idf-weighted bags of words")
        add_device_arg(p)

    p = sub.add_parser("distance", help="WMD between two texts")
    common(p)
    p.add_argument("text1")
    p.add_argument("text2")
    p.add_argument("--method", choices=("exact", "sinkhorn"), default="exact")
    p.add_argument("--blur", type=float, default=0.01, help="Sinkhorn blur (epsilon for p=1)")
    p.set_defaults(func=_distance)

    p = sub.add_parser("knn", help="nearest documents of a corpus to query texts")
    common(p)
    p.add_argument(
        "--corpus",
        required=True,
        metavar="DIR_OR_JSONL",
        help="a directory of *.txt files, a .jsonl file or one document per line",
    )
    p.add_argument("--query", required=True, action="append", help="query text (repeatable)")
    p.add_argument("-k", type=int, default=10, help="neighbours per query (default 10)")
    p.add_argument(
        "--method",
        choices=("prune", "brute", "sinkhorn"),
        default="prune",
        help="prune: exact prefetch-and-prune (default); brute; sinkhorn (approx.)",
    )
    _add_scheduler_arg(p)
    p.set_defaults(func=_with_scheduler(_knn))

    p = sub.add_parser("classify", help="k-NN document classification with WMD")
    common(p)
    p.add_argument(
        "--train",
        required=True,
        help="labelled corpus (.jsonl with 'label', "
        "__label__ lines, or a directory with one folder per label)",
    )
    p.add_argument("--test", required=True, help="labelled corpus to classify, same formats")
    p.add_argument("-k", type=int, default=5, help="neighbours that vote (default 5)")
    p.add_argument("--method", choices=("prune", "brute", "sinkhorn"), default="prune")
    p.add_argument(
        "--out",
        default="results/wmd/predictions.csv",
        help="CSV of predictions, appended batch by batch (default: %(default)s)",
    )
    p.add_argument("--batch", type=int, default=64, help="test documents per logged batch")
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows already in --out and classify only the rest",
    )
    _add_scheduler_arg(p)
    p.set_defaults(func=_with_scheduler(_classify))


def _add_scheduler_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS|local:N",
        help="search a corpus sharded on Dask: a scheduler address (tcp://host:8786) or local:N "
        "(a LocalCluster of N worker processes, started and closed here); --method prune|brute",
    )


def _with_scheduler(func):
    """Run ``func(args)`` with ``args.client``: a Dask client for ``--scheduler``, else None."""

    def run(args: argparse.Namespace) -> int:
        if args.scheduler is None:
            args.client = None
            return func(args)
        if args.method == "sinkhorn":
            raise ValueError("--scheduler searches with --method prune or brute, got sinkhorn")
        from wdist_apps.wmd.distributed import open_client

        with open_client(args.scheduler) as client:
            args.client = client
            return func(args)

    return run


def _model(args: argparse.Namespace):
    from wdist_apps.wmd.data import lee_word2vec
    from wdist_apps.wmd.embeddings import load_embeddings
    from wdist_apps.wmd.model import WMD

    emb = (
        lee_word2vec(verbose=True) if args.embeddings == "lee" else load_embeddings(args.embeddings)
    )
    return WMD(
        emb,
        normalize=not args.no_normalize,
        idf=args.idf,
        stop_words=not args.keep_stop_words,
        device=args.device,
        blur=getattr(args, "blur", 0.01),
    )


def _distance(args: argparse.Namespace) -> int:
    wmd = _model(args)
    if args.idf:
        wmd.fit([args.text1, args.text2])
    docs = wmd.transform([args.text1, args.text2])
    names = ("text1", "text2")
    for name, oov, n in zip(names, docs.n_oov, docs.n_tokens):
        if oov:
            print(f"{name}: dropped {oov} of {n} tokens (out of vocabulary)")
    for name, length in zip(names, docs.lengths):
        if length == 0:  # named here: the model would call it doc1 / doc2
            raise ValueError(
                f"{name} has no in-vocabulary word (stop words are dropped unless "
                "--keep-stop-words): WMD is undefined for an empty document"
            )
    print(f"{wmd.distance(args.text1, args.text2, method=args.method):.6f}")
    return 0


def _knn(args: argparse.Namespace) -> int:
    import numpy as np

    from wdist_apps.wmd.corpus import read_corpus

    _check_at_least_one(args, "k")
    corpus = read_corpus(args.corpus)
    wmd = _model(args).fit(corpus.texts)
    docs = wmd.transform(corpus.texts)
    keep = np.flatnonzero(docs.lengths > 0)
    if keep.size < len(corpus):
        print(f"skipped {len(corpus) - keep.size} corpus documents with no in-vocabulary word")
    dist, ind = wmd.knn(
        args.query, docs.subset(keep), k=min(args.k, keep.size), method=args.method,
        client=args.client,
    )
    for q, text in enumerate(args.query):
        print(f"query: {text}")
        for rank, (d, i) in enumerate(zip(dist[q], keep[ind[q]]), 1):
            snippet = " ".join(corpus.texts[i].split())[:90]
            print(f"  {rank:>3}  {d:.4f}  [{corpus.ids[i]}] {snippet}")
    if args.method == "prune":
        print(f"search: {wmd.search_stats_}")
    return 0


def _classify(args: argparse.Namespace) -> int:
    import numpy as np

    from wdist_apps.runtime import CSVLogger, progress
    from wdist_apps.wmd.corpus import read_corpus

    _check_at_least_one(args, "k", "batch")
    train = read_corpus(args.train, labels_from_dirs=True)
    test = read_corpus(args.test, labels_from_dirs=True)
    for name, c in (("--train", train), ("--test", test)):
        if c.labels is None:
            raise ValueError(f"{name}: the corpus has no labels")
    wmd = _model(args)
    clf = wmd.kneighbors_classifier(n_neighbors=args.k, method=args.method, client=args.client)
    tr = wmd.fit(train.texts).transform(train.texts)
    keep = np.flatnonzero(tr.lengths > 0)
    if args.k > keep.size:
        raise ValueError(f"-k {args.k} is more than the {keep.size} --train documents with an "
                         "in-vocabulary word")
    clf.fit(tr.subset(keep), [train.labels[i] for i in keep])
    out = Path(args.out)
    if args.resume and out.is_file():
        _check_predictions_header(out)
    te = wmd.transform(test.texts)
    with CSVLogger(out, resume=args.resume) as log:
        # read after CSVLogger dropped a torn last row, whose document is classified again
        done = {row["id"] for row in _rows(out)}
        todo = [i for i in range(len(test)) if test.ids[i] not in done]
        batches = range(0, len(todo), args.batch)
        for s in progress(batches, total=len(batches), desc="classify", unit="batch"):
            idx = [i for i in todo[s : s + args.batch] if te.lengths[i] > 0]
            pred = clf.predict(te.subset(idx)) if idx else []
            for i, p in zip(idx, pred):
                log.log({"id": test.ids[i], "label": test.labels[i], "predicted": p})
    rows = _rows(out)
    errors = sum(r["label"] != r["predicted"] for r in rows)
    skipped = int((te.lengths == 0).sum())
    print(
        f"{len(rows)} test documents classified, {errors} errors: "
        f"error rate {errors / max(1, len(rows)):.4f} (k={args.k}); predictions in {out}"
    )
    if skipped:
        print(f"{skipped} test documents had no in-vocabulary word and were not classified")
    return 0


def _check_at_least_one(args: argparse.Namespace, *names: str) -> None:
    """Raise ``ValueError`` naming the option (``-k``, ``--batch``) of any ``names`` below 1."""
    for name in names:
        if getattr(args, name) < 1:
            flag = f"-{name}" if len(name) == 1 else f"--{name}"
            raise ValueError(f"{flag} must be >= 1, got {getattr(args, name)}")


PREDICTION_COLUMNS = ["id", "label", "predicted"]


def _check_predictions_header(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` (resumed by ``classify --resume``) is empty or a
    predictions CSV: a header of exactly :data:`PREDICTION_COLUMNS` (in any order)."""
    import csv

    with open(path, newline="") as fh:
        first = fh.readline()
    if not first.endswith("\n"):  # empty, or a torn header: CSVLogger starts the file afresh
        return
    header = next(csv.reader([first]))
    if sorted(header) != sorted(PREDICTION_COLUMNS):
        raise ValueError(
            f"--out {path}: cannot resume, not a predictions CSV: expected the columns "
            f"{','.join(PREDICTION_COLUMNS)}, got {','.join(header)}"
        )


def _rows(path: str | Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
