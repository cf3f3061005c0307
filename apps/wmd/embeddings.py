"""Word embeddings: an in-memory / memory-mapped ``[V, d]`` table and loaders for common formats.

Formats read by :func:`load_embeddings` (detected from the file's bytes, not its name):

- word2vec text: a header ``"V d"``, then ``V`` lines ``word f1 ... fd``;
- word2vec binary: the same header, then ``V`` records ``word<space>`` + ``d`` float32 (LE);
- GloVe text: no header, lines ``word f1 ... fd``;
- a directory written by :meth:`Embeddings.save` (``vectors.npy`` + ``vocab.txt``), memory-mapped;
- a gensim ``KeyedVectors`` file (when gensim is installed), memory-mapped.

Text and binary files are parsed once into a ``.npy`` cache (under the user's cache directory),
written through ``numpy.lib.format.open_memmap`` and re-opened with ``mmap_mode="r"``: a
multi-gigabyte embedding file is never held in RAM, and the second load is instant.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from wdist_apps.runtime import progress
from wdist_apps.runtime.checkpoint import atomic_write


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/wdist`` (default ``~/.cache/wdist``); created on demand."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "wdist"


def _write_vocab(directory: Path, words: list[str]) -> None:
    """``vocab.txt``, the completion marker of a saved embedding: written last, atomically."""
    data = ("\n".join(words) + "\n").encode("utf-8")
    atomic_write(directory / "vocab.txt", lambda fh: fh.write(data))


def _first_nonfinite(vectors: np.ndarray, chunk: int = 65536) -> int | None:
    """Index of the first row of ``vectors`` holding a NaN or inf (scanned in chunks, so a
    memory-mapped table is never loaded whole), or None."""
    for s in range(0, vectors.shape[0], chunk):
        bad = np.flatnonzero(~np.isfinite(np.asarray(vectors[s : s + chunk])).all(axis=1))
        if bad.size:
            return s + int(bad[0])
    return None


class Embeddings:
    """A vocabulary ``words[i]`` with vectors ``vectors[i]`` (``[V, d]``, any float dtype, may be a
    read-only ``np.memmap``). Non-finite vectors (NaN or inf) are rejected with a ``ValueError``
    naming the first such word (``check_finite=False`` skips that one pass over the table, for
    tables already checked when they were parsed)."""

    def __init__(
        self, words: Iterable[str], vectors: np.ndarray, check_finite: bool = True
    ) -> None:
        words = list(words)
        vectors = np.asarray(vectors) if not isinstance(vectors, np.memmap) else vectors
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be a [V, d] array, got shape {tuple(vectors.shape)}")
        if len(words) != vectors.shape[0]:
            raise ValueError(
                f"words has {len(words)} entries but vectors has {vectors.shape[0]} rows"
            )
        if not np.issubdtype(vectors.dtype, np.floating):
            raise TypeError(f"vectors must be floating point, got dtype {vectors.dtype}")
        bad = _first_nonfinite(vectors) if check_finite else None
        if bad is not None:
            raise ValueError(
                f"vectors has a non-finite value (NaN or inf) in row {bad} (word {words[bad]!r})"
            )
        self.words = words
        self.vectors = vectors
        self.index: dict[str, int] = {}
        for i, w in enumerate(words):
            self.index.setdefault(w, i)  # first occurrence wins, as in word2vec's own reader

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __repr__(self) -> str:
        return f"Embeddings(vocab={len(self)}, dim={self.dim}, dtype={self.vectors.dtype})"

    def save(self, directory: str | Path) -> Path:
        """Write ``vectors.npy`` + ``vocab.txt`` (one word per line) into ``directory``; both
        atomically, ``vocab.txt`` (the marker of a complete save) last."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for w in self.words:
            if "\n" in w:
                raise ValueError(f"cannot save a word containing a newline: {w!r}")
        (directory / "vocab.txt").unlink(missing_ok=True)
        atomic_write(directory / "vectors.npy", lambda fh: np.save(fh, np.asarray(self.vectors)))
        _write_vocab(directory, self.words)
        return directory

    @classmethod
    def from_keyedvectors(cls, kv: object) -> Embeddings:
        """Wrap a gensim ``KeyedVectors`` (or a model with ``.wv``) without copying its vectors."""
        kv = getattr(kv, "wv", kv)
        if not hasattr(kv, "index_to_key") or not hasattr(kv, "vectors"):
            raise TypeError(f"expected a gensim KeyedVectors, got {type(kv).__name__}")
        return cls(kv.index_to_key, kv.vectors)


def _load_saved(directory: Path, check_finite: bool = True) -> Embeddings:
    vocab = directory / "vocab.txt"
    vectors = directory / "vectors.npy"
    if not vocab.is_file() or not vectors.is_file():
        raise ValueError(
            f"{directory} is a directory but not a saved embedding (needs vocab.txt + vectors.npy)"
        )
    try:
        text = vocab.read_text(encoding="utf-8")
        if not text.endswith("\n"):
            raise ValueError("vocab.txt is truncated (no final newline)")
        words = text.split("\n")[:-1]
        return Embeddings(words, np.load(vectors, mmap_mode="r"), check_finite=check_finite)
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{directory}: damaged saved embedding ({err}); if it is a wdist cache folder, "
            f"delete it (rm -r '{directory}') and it is rebuilt on the next load"
        ) from None


def _header(line: bytes) -> tuple[int, int] | None:
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def _is_vector_line(line: bytes, dim: int | None = None) -> bool:
    try:
        parts = line.decode("utf-8").rstrip("\n").rstrip(" ").split(" ")
        np.asarray(parts[1:], dtype=np.float64)
    except (UnicodeDecodeError, ValueError):
        return False
    return len(parts) >= 2 and (dim is None or len(parts) == dim + 1)


def sniff_format(path: str | Path) -> str:
    """``"saved"``, ``"gensim"``, ``"word2vec-text"``, ``"word2vec-binary"`` or ``"glove"``.

    Raises ``ValueError`` for a file that is none of these.
    """
    path = Path(path)
    if path.is_dir():
        return "saved"
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file not found: {path}")
    with open(path, "rb") as fh:
        first = fh.readline(1 << 20)
        second = fh.readline(1 << 20)
    if first[:1] == b"\x80":  # a pickle: gensim's KeyedVectors.save format
        return "gensim"
    header = _header(first)
    if header is not None:
        if _is_vector_line(second, header[1]):
            return "word2vec-text"
        if b" " in second[:1000] or not second:
            return "word2vec-binary"
    elif _is_vector_line(first):
        return "glove"
    raise ValueError(
        f"{path} is not a word2vec (text or binary), GloVe text, gensim KeyedVectors or saved "
        "embedding file: expected a 'V d' header or lines 'word f1 ... fd'"
    )


def _corrupt(path: Path, lineno: int, why: str) -> ValueError:
    return ValueError(f"{path}: corrupt embedding file at record {lineno}: {why}")


def _check_finite(path: Path, row: np.ndarray, word: str, lineno: int) -> None:
    if not np.isfinite(row).all():
        raise _corrupt(path, lineno, f"the vector of word {word!r} holds a NaN or inf")


def _read_text(path: Path, out: np.ndarray, has_header: bool) -> list[str]:
    n, d = out.shape
    words: list[str] = []
    with open(path, encoding="utf-8", errors="strict") as fh:
        if has_header:
            fh.readline()
        for line in progress(fh, total=n, desc=f"reading {path.name}", unit="word"):
            line = line.rstrip("\n").rstrip(" ")
            if not line:
                continue
            if len(words) >= n:
                raise _corrupt(path, len(words) + 1, f"more than the {n} words announced")
            parts = line.split(" ")
            if len(parts) != d + 1:
                raise _corrupt(path, len(words) + 1, f"expected {d} numbers, got {len(parts) - 1}")
            try:
                out[len(words)] = np.asarray(parts[1:], dtype=np.float32)
            except ValueError as err:
                raise _corrupt(path, len(words) + 1, str(err)) from None
            _check_finite(path, out[len(words)], parts[0], len(words) + 1)
            words.append(parts[0])
    if len(words) != n:
        raise _corrupt(path, len(words) + 1, f"file ends after {len(words)} of {n} words")
    return words


def _count_glove(path: Path) -> tuple[int, int]:
    n, d = 0, 0
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                if n == 0:
                    d = len(line.rstrip().split(b" ")) - 1
                n += 1
    return n, d


def _read_binary(path: Path, out: np.ndarray) -> list[str]:
    n, d = out.shape
    nbytes = 4 * d
    words: list[str] = []
    with open(path, "rb") as fh:
        fh.readline()
        for i in progress(range(n), desc=f"reading {path.name}", unit="word"):
            chars = bytearray()
            while True:
                c = fh.read(1)
                if not c:
                    raise _corrupt(path, i + 1, f"file ends after {i} of {n} words")
                if c == b" ":
                    break
                if c != b"\n":
                    chars += c
                if len(chars) > 10_000:
                    raise _corrupt(path, i + 1, "word longer than 10,000 bytes (not binary?)")
            buf = fh.read(nbytes)
            if len(buf) != nbytes:
                raise _corrupt(path, i + 1, f"vector truncated ({len(buf)} of {nbytes} bytes)")
            out[i] = np.frombuffer(buf, dtype="<f4")
            try:
                words.append(chars.decode("utf-8"))
            except UnicodeDecodeError:
                words.append(chars.decode("latin-1"))
            _check_finite(path, out[i], words[-1], i + 1)
    return words


def load_embeddings(path: str | Path, format: str = "auto", cache: bool = True) -> Embeddings:
    """Load word embeddings from ``path`` (see the module docstring for the formats).

    ``format`` is ``"auto"`` (sniffed from the bytes) or one of ``"word2vec-text"``,
    ``"word2vec-binary"``, ``"glove"``, ``"gensim"``, ``"saved"``. With ``cache=True`` a parsed
    text/binary file is kept as a memory-mapped ``.npy`` under :func:`cache_dir` keyed by the
    file's path, size and modification time.
    """
    path = Path(path)
    fmt = sniff_format(path) if format == "auto" else format
    if fmt == "saved":
        return _load_saved(path)
    if fmt == "gensim":
        try:
            from gensim.models import KeyedVectors
        except ImportError as err:
            raise ValueError(f"{path} is a gensim KeyedVectors file; install gensim") from err
        try:
            return Embeddings.from_keyedvectors(KeyedVectors.load(str(path), mmap="r"))
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
                KeyError, TypeError, ValueError) as err:  # what unpickling damaged bytes raises
            raise ValueError(
                f"{path}: not a readable gensim KeyedVectors file ({type(err).__name__}: {err})"
            ) from None
    if fmt not in ("word2vec-text", "word2vec-binary", "glove"):
        raise ValueError(
            "format must be 'auto', 'word2vec-text', 'word2vec-binary', 'glove', 'gensim' or "
            f"'saved', got {format!r}"
        )
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{fmt}".encode())
    target = cache_dir() / "embeddings" / key.hexdigest()[:16]
    if cache and (target / "vocab.txt").is_file():
        try:  # vectors were checked for NaN/inf when the cache was written
            return _load_saved(target, check_finite=False)
        except ValueError:  # a damaged cache (e.g. left by an older version): rebuild it
            (target / "vocab.txt").unlink()
    if fmt == "glove":
        n, d = _count_glove(path)
    else:
        with open(path, "rb") as fh:
            header = _header(fh.readline())
        if header is None:
            raise ValueError(f"{path}: expected a word2vec header 'V d' on the first line")
        n, d = header
    if n == 0 or d == 0:
        raise ValueError(f"{path}: the file holds no vectors")
    if cache:
        target.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".vectors.npy.", suffix=".tmp", dir=target)
        os.close(fd)
        tmp = Path(name)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d))
    else:
        out = np.empty((n, d), dtype=np.float32)
    try:
        if fmt == "word2vec-binary":
            words = _read_binary(path, out)
        else:
            words = _read_text(path, out, has_header=fmt == "word2vec-text")
    except BaseException:
        if cache:
            del out
            tmp.unlink(missing_ok=True)
        raise
    if not cache:
        return Embeddings(words, out)
    out.flush()
    del out
    os.replace(tmp, target / "vectors.npy")
    _write_vocab(target, words)
    return _load_saved(target, check_finite=False)
