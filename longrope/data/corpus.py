"""Books: names and globs under a corpus folder, their text, and documents joined into token ids."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from longrope.data.tokens import encode_in_batches, token_dtype

# ---------------------------------------------------------------------------------------------
# Books


def book_path(corpus_dir: str | Path, name: str) -> Path:
    """`name` is a path under the corpus folder without the .txt.gz suffix, e.g. 'shakespeare/hamlet'."""
    path = Path(corpus_dir) / f"{name}.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"book '{name}' not found: {path} does not exist")
    return path


def read_book(path: str | Path) -> str:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return f.read().lstrip("\ufeff")
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as error:
        raise ValueError(f"book {path} is not gzipped UTF-8 text: {error}") from None


def list_books(corpus_dir: str | Path, patterns: list[str]) -> list[str]:
    """Expand glob patterns ('shakespeare/*') into sorted book names; a pattern matching nothing is an error."""
    root = Path(corpus_dir)
    names: list[str] = []
    for pattern in patterns:
        matched = sorted(str(p.relative_to(root))[: -len(".txt.gz")] for p in root.glob(f"{pattern}.txt.gz"))
        if not matched:
            raise FileNotFoundError(f"no book in {root} matches '{pattern}'")
        names += [m for m in matched if m not in names]
    return names


def encode_documents(tokenizer, texts: list[str]) -> np.ndarray:
    """Documents joined as BOS doc EOS BOS doc EOS … (the layout the paper trains on), or without the marker the
    tokenizer does not have, in one array: a token store's layout for texts that fit in memory."""
    documents = [np.zeros(0, dtype=np.int64), *encode_in_batches(tokenizer, texts)]
    return np.concatenate(documents).astype(token_dtype(tokenizer.vocab_size))

