import numpy as np
import pytest

from wdist_apps.wmd import Embeddings, load_embeddings
from wdist_apps.wmd.embeddings import sniff_format

WORDS = ["king", "queen", "man", "woman", "naïve"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def vectors():
    return np.random.default_rng(1).normal(size=(len(WORDS), 6)).astype(np.float32)


def _write_text(path, vectors, header=True):
    lines = [f"{len(WORDS)} {vectors.shape[1]}"] if header else []
    lines += [w + " " + " ".join(repr(float(x)) for x in v) for w, v in zip(WORDS, vectors)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_word2vec_text_matches_gensim(tmp_path, vectors):
    from gensim.models import KeyedVectors

    path = tmp_path / "w.txt"
    _write_text(path, vectors)
    assert sniff_format(path) == "word2vec-text"
    emb = load_embeddings(path)
    ref = KeyedVectors.load_word2vec_format(str(path), binary=False)
    assert emb.words == list(ref.index_to_key)
    np.testing.assert_array_equal(emb.vectors, ref.vectors)
    assert isinstance(emb.vectors, np.memmap)  # parsed once, cached, memory-mapped
    again = load_embeddings(path)
    np.testing.assert_array_equal(again.vectors, ref.vectors)


def test_word2vec_binary_written_by_gensim(tmp_path, vectors):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vectors.shape[1])
    kv.add_vectors(WORDS, vectors)
    path = tmp_path / "w.bin"
    kv.save_word2vec_format(str(path), binary=True)
    assert sniff_format(path) == "word2vec-binary"
    emb = load_embeddings(path, cache=False)
    assert emb.words == WORDS
    np.testing.assert_array_equal(emb.vectors, vectors)


def test_glove_text_without_header(tmp_path, vectors):
    path = tmp_path / "glove.6B.6d.txt"
    _write_text(path, vectors, header=False)
    assert sniff_format(path) == "glove"
    emb = load_embeddings(path)
    assert emb.words == WORDS and emb.dim == 6
    np.testing.assert_allclose(emb.vectors, vectors, rtol=1e-7)


def test_gensim_keyedvectors_and_saved_directory(tmp_path, vectors):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vectors.shape[1])
    kv.add_vectors(WORDS, vectors)
    kv.save(str(tmp_path / "w.kv"))
    emb = load_embeddings(tmp_path / "w.kv")
    assert emb.words == WORDS
    np.testing.assert_array_equal(emb.vectors, vectors)
    saved = load_embeddings(Embeddings(WORDS, vectors).save(tmp_path / "saved"))
    assert saved.words == WORDS and isinstance(saved.vectors, np.memmap)
    np.testing.assert_array_equal(saved.vectors, vectors)


@pytest.mark.parametrize("damage", ["junk", "truncated", "not_keyedvectors"])
def test_corrupt_gensim_file_names_the_file(tmp_path, vectors, damage):
    import pickle

    from gensim.models import KeyedVectors

    kv = KeyedVectors(vectors.shape[1])
    kv.add_vectors(WORDS, vectors)
    kv.save(str(tmp_path / "w.kv"))
    good = (tmp_path / "w.kv").read_bytes()
    data = {
        "junk": b"\x80\x04junk",
        "truncated": good[: len(good) // 2],
        "not_keyedvectors": pickle.dumps({"a": 1}),
    }[damage]
    path = tmp_path / "bad.kv"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"bad\.kv: not a readable gensim KeyedVectors file"):
        load_embeddings(path)


def test_neither_format_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello world\nthis is prose\n")
    with pytest.raises(ValueError, match="not a word2vec .*GloVe"):
        load_embeddings(path)
    with pytest.raises(FileNotFoundError):
        load_embeddings(tmp_path / "missing.vec")


def test_truncated_files_are_clear_errors(tmp_path, vectors):
    text = tmp_path / "t.txt"
    _write_text(text, vectors)
    lines = text.read_text().splitlines()
    text.write_text("\n".join(lines[:3] + [lines[3].rsplit(" ", 1)[0]]) + "\n")
    with pytest.raises(ValueError, match="corrupt embedding file at record 3: expected 6 numbers"):
        load_embeddings(text)
    binary = tmp_path / "t.bin"
    body = b"".join(w.encode() + b" " + v.tobytes() for w, v in zip(WORDS, vectors))
    binary.write_bytes(f"{len(WORDS)} 6\n".encode() + body[:-10])
    with pytest.raises(ValueError, match="record 5: vector truncated"):
        load_embeddings(binary)
    assert not list((tmp_path / "cache").rglob("*.npy"))  # no half-written cache left behind


def test_embeddings_validation():
    with pytest.raises(ValueError, match="words has 2 entries but vectors has 3 rows"):
        Embeddings(["a", "b"], np.zeros((3, 2)))
    with pytest.raises(TypeError, match="floating"):
        Embeddings(["a"], np.zeros((1, 2), dtype=int))


def test_damaged_cache_is_rebuilt(tmp_path, vectors):
    path = tmp_path / "w.txt"
    _write_text(path, vectors)
    load_embeddings(path)
    (cached,) = (tmp_path / "cache").rglob("vocab.txt")
    assert not list(cached.parent.glob("*.tmp"))  # temp files renamed into place
    cached.write_text("king\nque", encoding="utf-8")  # as if interrupted mid-write
    emb = load_embeddings(path)
    assert emb.words == WORDS
    np.testing.assert_array_equal(emb.vectors, vectors)
    assert cached.read_text(encoding="utf-8") == "\n".join(WORDS) + "\n"


def test_damaged_saved_directory_names_the_folder(tmp_path, vectors):
    saved = Embeddings(WORDS, vectors).save(tmp_path / "saved")
    assert load_embeddings(saved).words == WORDS
    (saved / "vocab.txt").write_text("king\nqueen\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"saved: damaged saved embedding .*rm -r"):
        load_embeddings(saved)
    (saved / "vocab.txt").write_text("king\nque", encoding="utf-8")
    with pytest.raises(ValueError, match="vocab.txt is truncated"):
        load_embeddings(saved)


@pytest.mark.parametrize("bad", ["nan", "inf", "-1e999"])
def test_non_finite_vectors_are_rejected(tmp_path, vectors, bad):
    text = tmp_path / "nan.txt"
    _write_text(text, vectors)
    lines = text.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0] + " " + bad
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"nan.txt: corrupt .* 3: .*'man' holds a NaN or inf"):
        load_embeddings(text)
    assert not list((tmp_path / "cache").rglob("*.npy"))
    binary = tmp_path / "nan.bin"
    vec = vectors.copy()
    vec[1, 2] = float(bad)
    body = b"".join(w.encode() + b" " + v.tobytes() for w, v in zip(WORDS, vec))
    binary.write_bytes(f"{len(WORDS)} 6\n".encode() + body)
    with pytest.raises(ValueError, match=r"nan.bin: .* record 2: .*'queen' holds a NaN or inf"):
        load_embeddings(binary, cache=False)
    with pytest.raises(ValueError, match=r"non-finite value \(NaN or inf\) in row 1 \(word 'queen"):
        Embeddings(WORDS, vec)
    saved = tmp_path / "saved"
    saved.mkdir()
    np.save(saved / "vectors.npy", vec)
    (saved / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"saved: damaged saved embedding .*'queen'"):
        load_embeddings(saved)
