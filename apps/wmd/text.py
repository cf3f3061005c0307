"""Tokenisation: lower-casing, a word regex and scikit-learn's English stop-word list."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

# Words are runs of letters/digits, optionally with inner apostrophes or hyphens ("don't", "x-ray").
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")


@functools.cache
def english_stop_words() -> frozenset[str]:
    """scikit-learn's ``ENGLISH_STOP_WORDS`` (318 words), imported on first use: scikit-learn
    takes seconds to import, and a process that only searches encoded documents (a Dask worker)
    never needs it."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return ENGLISH_STOP_WORDS


def tokenize(text: str, lowercase: bool = True, stop_words: bool = True) -> list[str]:
    """Split ``text`` into word tokens.

    Lower-cases (``lowercase=True``), keeps runs of letters and digits (inner ``'``/``-`` allowed)
    and drops scikit-learn's ``ENGLISH_STOP_WORDS`` (``stop_words=True``), as Kusner et al. (2015)
    remove stop words before computing WMD.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if lowercase:
        text = text.lower()
    tokens = _WORD.findall(text)
    if stop_words:
        stop = english_stop_words()
        tokens = [t for t in tokens if t.lower() not in stop]
    return tokens


def as_tokens(
    doc: str | Iterable[str], lowercase: bool = True, stop_words: bool = True
) -> list[str]:
    """A document as tokens: a ``str`` is tokenised; a list of tokens is used as given."""
    if isinstance(doc, str):
        return tokenize(doc, lowercase=lowercase, stop_words=stop_words)
    tokens = list(doc)
    for t in tokens:
        if not isinstance(t, str):
            raise TypeError(
                f"a document must be a str or a list of str tokens; found a {type(t).__name__}"
            )
    return tokens
