"""``wdist wmd distance|knn|classify``: Word Mover's Distance from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from wdist_apps.runtime import add_device_arg
from wdist_apps.runtime.run import add_resume_args

EMBEDDINGS_HELP = (
    "word2vec (text/binary), GloVe text, gensim KeyedVectors file, a directory saved by "
    "Embeddings.save, or 'lee' for a word2vec model trained on gensim's bundled Lee corpus "
    "(trained once, about 20 s of CPU, then cached)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "wmd",
        help="Word Mover's Distance between documents, k-NN search and classification",
        description="Word Mover's Distance (Kusner et al., ICML 2015) on the wdist core.",
    )
    sub = parser.add_subparsers(dest="wmd_command", metavar="{distance,knn,classify}",
                                required=True)

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
        default="runs/wmd/predictions.csv",
        help="CSV of predictions, appended batch by batch (default: %(default)s); what it "
        "classifies (the --test file and its SHA-256) is recorded beside it in OUT.json",
    )
    p.add_argument("--batch", type=int, default=64, help="test documents per logged batch")
    add_resume_args(
        p,
        resume="keep the rows already in --out and classify only the rest (the same --test only)",
        overwrite="replace an existing --out instead of refusing to",
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
    import json

    import numpy as np

    from wdist_apps.runtime import CSVLogger, progress
    from wdist_apps.runtime.checkpoint import atomic_write
    from wdist_apps.wmd.corpus import read_corpus

    _check_at_least_one(args, "k", "batch")
    out = Path(args.out)
    source = _check_out(out, args)
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
    te = wmd.transform(test.texts)
    atomic_write(_source_file(out), lambda fh: fh.write(json.dumps(source, indent=1).encode()))
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


def _check_out(out: Path, args: argparse.Namespace) -> dict[str, str]:
    """Refuse an ``--out`` that would lose or mix up earlier predictions: an existing file
    without ``--resume`` / ``--overwrite``, or a ``--resume`` of predictions made for another
    ``--test`` corpus (checked by its SHA-256). Returns what to record about this one."""
    import json

    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; expected a CSV file path")
    source = {"test": str(Path(args.test).resolve()), "test_sha256": _digest(Path(args.test))}
    if not out.is_file() or out.stat().st_size == 0 or args.overwrite:
        return source
    if not args.resume:
        raise FileExistsError(f"--out {out} already holds predictions: pass --resume to "
                              "continue them, --overwrite to replace them, or another --out")
    _check_predictions_header(out)
    recorded = _source_file(out)
    if recorded.is_file():
        old = json.loads(recorded.read_text())
        if old.get("test_sha256") != source["test_sha256"]:
            raise ValueError(
                f"--resume: the predictions in {out} are for --test {old.get('test')} (SHA-256 "
                f"{str(old.get('test_sha256'))[:12]}...), not {args.test} (SHA-256 "
                f"{source['test_sha256'][:12]}...); use another --out or --overwrite")
    return source


def _source_file(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _digest(path: Path) -> str:
    """SHA-256 of a corpus file, or of a folder's files (relative names and contents)."""
    import hashlib

    sha = hashlib.sha256()
    if path.is_file():
        sha.update(path.read_bytes())
    for f in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []:
        sha.update(str(f.relative_to(path)).encode() + b"\0")
        sha.update(f.read_bytes())
    return sha.hexdigest()


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
