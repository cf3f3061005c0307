"""Reading users' corpora: a directory of text files, a JSON-lines file, or one document per line.

- directory: every ``*.txt`` file (recursively, sorted) is one document; its id is the relative
  path; with ``labels_from_dirs=True`` its label is the name of its parent folder;
- ``.jsonl``: one JSON object per line with a ``"text"`` field and optional ``"id"`` / ``"label"``;
- any other text file: one document per non-empty line, optionally prefixed fastText-style with
  ``__label__NAME`` (as gensim's ``pang_lee_polarity.cor``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Corpus:
    ids: list[str]
    texts: list[str]
    labels: list[str] | None

    def __len__(self) -> int:
        return len(self.texts)


def _read_text(path: Path) -> str:
    """``path`` decoded as UTF-8 text. Binary content (a NUL byte, or more than 1% of the
    characters undecodable) is a ``ValueError``; a few undecodable bytes are replaced, with a
    warning that counts them."""
    data = path.read_bytes()
    nul = data.find(b"\x00")
    if nul >= 0:
        raise ValueError(f"{path}: not a text file (a NUL byte at offset {nul}); a corpus is "
                         "UTF-8 text: one document per line, .jsonl, or a folder of .txt files")
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd")
    if bad > 0.01 * max(len(text), 1):
        raise ValueError(f"{path}: {bad} of {len(text)} characters are not UTF-8: not a text "
                         "corpus, or another encoding (convert it to UTF-8 first)")
    if bad:
        warnings.warn(f"{path}: {bad} bytes that are not UTF-8 were replaced by U+FFFD",
                      stacklevel=3)
    return text


def read_corpus(path: str | Path, labels_from_dirs: bool = False) -> Corpus:
    """Read the documents under ``path`` (see the module docstring for the formats)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise ValueError(f"corpus directory {path} holds no *.txt files")
        ids = [str(f.relative_to(path)) for f in files]
        texts = [_read_text(f) for f in files]
        labels = [f.parent.name for f in files] if labels_from_dirs else None
        return Corpus(ids, texts, labels)
    if not path.is_file():
        raise FileNotFoundError(f"corpus not found: {path}")
    lines = _read_text(path).splitlines()
    ids, texts, labels = [], [], []
    if path.suffix == ".jsonl":
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not valid JSON ({err.msg})") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise ValueError(f'{path}:{n}: expected an object with a "text" string field')
            ids.append(str(rec.get("id", n)))
            texts.append(rec["text"])
            labels.append(None if rec.get("label") is None else str(rec["label"]))
    else:
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            label = None
            if line.startswith("__label__"):
                head, _, line = line.partition(" ")
                label = head.removeprefix("__label__")
            ids.append(str(n))
            texts.append(line.strip())
            labels.append(label)
    if not texts:
        raise ValueError(f"corpus {path} holds no documents")
    has = [lab is not None for lab in labels]
    if any(has) and not all(has):
        raise ValueError(f"{path}: some documents have a label and some do not")
    return Corpus(ids, texts, labels if all(has) else None)
