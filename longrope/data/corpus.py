"""Books: names and globs under a corpus folder, their text, and documents joined into token ids."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------
# Books


def book_path(corpus_dir: str | Path, name: str) -> Path:
    """`name` is a path under the corpus folder without the .txt.gz suffix, e.g. 'shakespeare/hamlet'."""
    path = Path(corpus_dir) / f"{name}.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"book '{name}' not found: {path} does not exist")
    return path


def read_book(path: str | Path) -> str:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().lstrip("\ufeff")


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
    """Join documents as BOS doc EOS BOS doc EOS … (the layout the paper trains on), or without the marker the
    tokenizer does not have."""
    head = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
    tail = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
    ids: list[int] = []
    for text in texts:
        ids += [*head, *tokenizer.encode(text), *tail]
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max else np.int32
    return np.asarray(ids, dtype=dtype)


def split_heldout(tokens: np.ndarray, fitness_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Held-out text → (search-fitness region, final-evaluation region), disjoint by construction."""
    cut = int(len(tokens) * fitness_fraction)
    return tokens[:cut], tokens[cut:]

