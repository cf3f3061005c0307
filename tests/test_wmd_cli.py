import json

import numpy as np
import pytest
import torch

from wdist_apps.cli import main
from wdist_apps.wmd.corpus import read_corpus

WORDS = ["flames", "blaze", "smoke", "sydney", "city", "bank", "money", "loan", "cash", "market"]


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("WDIST_NO_PROGRESS", "1")
    rng = np.random.default_rng(0)
    topic = np.repeat(np.eye(2) * 4, 5, axis=0)  # fire words near each other, money words too
    vec = np.hstack([topic, rng.normal(scale=0.3, size=(10, 3))]).astype(np.float32)
    emb = tmp_path / "emb.txt"
    emb.write_text(
        "10 5\n" + "\n".join(w + " " + " ".join(map(str, v)) for w, v in zip(WORDS, vec)) + "\n"
    )
    corpus = tmp_path / "corpus.jsonl"
    docs = [
        "flames smoke blaze",
        "bank money loan",
        "sydney city flames",
        "cash market bank",
        "zebra",
    ]
    corpus.write_text("\n".join(json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(docs)))
    train = tmp_path / "train.cor"
    train.write_text(
        "__label__fire flames smoke\n__label__fire blaze sydney flames\n__label__fire smoke city\n"
        "__label__money bank loan\n__label__money cash money\n__label__money market bank cash\n"
    )
    test = tmp_path / "test.cor"
    test.write_text(
        "__label__fire blaze smoke\n__label__money loan cash\n__label__fire flames city\n"
        "__label__money money market\n__label__fire the of\n"
    )
    return {"emb": emb, "corpus": corpus, "train": train, "test": test, "dir": tmp_path}


def test_distance(files, capsys):
    assert (
        main(["wmd", "distance", "--embeddings", str(files["emb"]), "flames smoke", "smoke flames"])
        == 0
    )
    assert float(capsys.readouterr().out.strip().splitlines()[-1]) == 0.0
    assert (
        main(
            [
                "wmd",
                "distance",
                "--embeddings",
                str(files["emb"]),
                "--device",
                "cpu",
                "flames zebra",
                "bank",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "text1: dropped 1 of 2 tokens" in out and float(out.splitlines()[-1]) > 0.5


@pytest.mark.parametrize(("text1", "text2", "name"), [("zebra", "flames", "text1"),
                                                      ("flames", "the of", "text2")])
def test_distance_names_the_empty_text_argument(files, capsys, text1, text2, name):
    assert main(["wmd", "distance", "--embeddings", str(files["emb"]), text1, text2]) == 2
    err = capsys.readouterr().err
    assert f"error: {name} has no in-vocabulary word" in err
    assert "doc1" not in err and "doc2" not in err


def test_knn_skips_empty_documents_and_ranks_by_topic(files, capsys):
    args = [
        "wmd",
        "knn",
        "--embeddings",
        str(files["emb"]),
        "--corpus",
        str(files["corpus"]),
        "--query",
        "smoke and flames in the city",
        "-k",
        "2",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "skipped 1 corpus documents" in out
    ranked = [line.split("[")[1].split("]")[0] for line in out.splitlines() if "[" in line]
    assert set(ranked[:2]) == {"d0", "d2"}


def _classify_args(files, out):
    return [
        "wmd",
        "classify",
        "--embeddings",
        str(files["emb"]),
        "--train",
        str(files["train"]),
        "--test",
        str(files["test"]),
        "-k",
        "1",
        "--out",
        str(out),
        "--batch",
        "2",
    ]


def test_classify_writes_predictions_and_resumes(files, capsys):
    out = files["dir"] / "pred.csv"
    base = _classify_args(files, out)
    assert main(base) == 0
    text = capsys.readouterr().out
    assert "4 test documents classified, 0 errors" in text
    assert "1 test documents had no in-vocabulary word" in text
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:3]) + "\n")  # as if interrupted after the first batch
    assert main(base + ["--resume"]) == 0
    assert out.read_text().splitlines() == lines


def test_classify_resume_after_a_torn_row_classifies_its_document_again(files, capsys):
    out = files["dir"] / "pred.csv"
    assert main(_classify_args(files, out)) == 0
    full = out.read_bytes()
    lines = full.decode().splitlines()
    out.write_bytes(full[: full.index(lines[3].encode()) + 3])  # killed while writing row 3
    assert main(_classify_args(files, out) + ["--resume"]) == 0
    assert out.read_text().splitlines() == lines
    assert "4 test documents classified" in capsys.readouterr().out.splitlines()[-2]


def test_classify_resume_on_another_csv_names_the_file_and_columns(files, capsys):
    out = files["dir"] / "other.csv"
    out.write_text("step,loss\n1,0.5\n")
    assert main(_classify_args(files, out) + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "other.csv: cannot resume" in err and "id,label,predicted" in err
    assert out.read_text() == "step,loss\n1,0.5\n"


def test_classify_with_idf(files, capsys):
    out = files["dir"] / "pred_idf.csv"
    args = [
        "wmd",
        "classify",
        "--embeddings",
        str(files["emb"]),
        "--train",
        str(files["train"]),
        "--test",
        str(files["test"]),
        "-k",
        "1",
        "--idf",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "4 test documents classified, 0 errors" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 5


def test_cli_errors_are_one_line(files, capsys):
    assert (
        main(
            [
                "wmd",
                "knn",
                "--embeddings",
                str(files["corpus"]),
                "--corpus",
                str(files["corpus"]),
                "--query",
                "flames",
            ]
        )
        == 2
    )
    assert "is not a word2vec" in capsys.readouterr().err
    assert (
        main(
            [
                "wmd",
                "classify",
                "--embeddings",
                str(files["emb"]),
                "--train",
                str(files["corpus"]),
                "--test",
                str(files["test"]),
            ]
        )
        == 2
    )
    assert "--train: the corpus has no labels" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [("classify", "--batch", "0"), ("classify", "--batch", "-1"), ("classify", "-k", "0"),
     ("knn", "-k", "0")],
)
def test_counts_below_one_are_clear_errors(files, capsys, command, option, value):
    if command == "classify":
        args = _classify_args(files, files["dir"] / "p.csv")
    else:
        args = ["wmd", "knn", "--embeddings", str(files["emb"]), "--corpus",
                str(files["corpus"]), "--query", "flames"]
    assert main(args + [option, value]) == 2
    assert f"{option} must be >= 1, got {value}" in capsys.readouterr().err


def test_classify_k_above_the_training_set_names_the_option(files, capsys):
    args = _classify_args(files, files["dir"] / "p.csv")
    assert main(args + ["-k", "1000"]) == 2
    assert "-k 1000 is more than the" in capsys.readouterr().err


def test_read_corpus_directory_with_label_folders(tmp_path):
    for label, text in (("pos", "great fun"), ("neg", "dull")):
        (tmp_path / label).mkdir()
        (tmp_path / label / "a.txt").write_text(text)
    c = read_corpus(tmp_path, labels_from_dirs=True)
    assert c.ids == ["neg/a.txt", "pos/a.txt"] and c.labels == ["neg", "pos"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: expected an object"):
        read_corpus(bad)


def test_demo_writes_query_and_figure(tmp_path):
    pytest.importorskip("gensim")
    from wdist_apps.wmd.demo import run

    files = run(tmp_path, torch.device("cpu"))
    assert [f.suffix for f in files] == [".txt", ".png"] and all(
        f.stat().st_size > 0 for f in files
    )
    assert "1. WMD" in files[0].read_text()


def test_classify_refuses_to_overwrite_or_resume_another_test_file(files, capsys):
    out = files["dir"] / "pred.csv"
    assert main(_classify_args(files, out)) == 0
    before = out.read_text()
    assert main(_classify_args(files, out)) == 2  # no --resume, no --overwrite
    assert "already holds predictions: pass --resume" in capsys.readouterr().err
    other = files["dir"] / "other_test.cor"
    other.write_text(files["test"].read_text().replace("blaze", "flames"))
    args = _classify_args(files, out)
    args[args.index("--test") + 1] = str(other)
    assert main(args + ["--resume"]) == 2
    assert "are for --test" in capsys.readouterr().err and out.read_text() == before
    assert main(args + ["--overwrite"]) == 0
