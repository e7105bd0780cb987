"""Token stores: the token ids of a corpus region (train, fitness, evaluation), written once by the token_ids rule
and read by every job through `load_tokens` as a memory map, so that a job's memory does not grow with the store.

A store is a folder:

    tokens.bin     every document's ids end to end, BOS doc EOS (or without the marker the tokenizer lacks);
                   uint16 when the vocabulary fits, else uint32
    documents.npy  int64 offsets into tokens.bin, one more than there are documents: document i is
                   tokens[documents[i]:documents[i + 1]]
    meta.json      tokenizer_sha256 (of the tokenizer folder's tokenizer.json), source (what the documents are,
                   longrope.data.sources), documents, tokens, dtype, vocab_size, max_id

It is written into `<folder>.partial` and renamed into place only when complete, so a failed or killed write leaves
nothing at `folder` that a rerun could trust.

May import: numpy.
"""
from __future__ import annotations

import json
import shutil
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

# Text per thread in one call of the batch encoder: enough whole documents for every thread to work on, while the
# batch's encodings, ~350 bytes a token at their peak, stay near 350 MB a thread (one token a byte, the byte tokenizer).
CHARS_PER_THREAD = 2**20


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def encode_in_batches(tokenizer, texts: Iterable[str], batch_chars: int = CHARS_PER_THREAD) -> Iterator[np.ndarray]:
    """Each text's ids as one document, BOS doc EOS (or without the marker the tokenizer lacks), an int64 array per
    text. Texts go to the tokenizer's batch encoder `batch_chars` characters at a time, each text whole (a text cut
    in two would not tokenize as it does whole): one batch of texts and their ids is all that is ever held."""
    head = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
    tail = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
    for batch in text_batches(texts, batch_chars):
        for ids in tokenizer.encode_batch(batch):
            yield np.array([*head, *ids, *tail], dtype=np.int64)


def text_batches(texts: Iterable[str], batch_chars: int) -> Iterator[list[str]]:
    """Whole texts, grouped until a group holds `batch_chars` characters."""
    batch, chars = [], 0
    for text in texts:
        batch.append(text)
        chars += len(text)
        if chars >= batch_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


class StoreWriter:
    """Appends documents' ids to a store being written at `<folder>.partial`. Leaving the `with` block normally
    checks it and renames it to `folder` (replacing an older store there); an exception removes it."""

    def __init__(self, folder: str | Path, tokenizer, source: str | dict):
        self.folder = Path(folder)
        self.partial = self.folder.with_name(self.folder.name + ".partial")
        self.vocab_size, self.dtype = tokenizer.vocab_size, token_dtype(tokenizer.vocab_size)
        self.meta = {"tokenizer_sha256": tokenizer.sha256, "source": source}
        self.offsets = array("q", [0])  # 8 bytes a document, not a Python int each
        self.max_id = -1

    def __enter__(self) -> StoreWriter:
        if self.folder.exists() and not (self.folder / "meta.json").is_file():
            raise FileExistsError(f"{self.folder} exists and is not a token store: not replacing it")
        shutil.rmtree(self.partial, ignore_errors=True)  # what a killed write left
        self.partial.mkdir(parents=True)
        self.file = open(self.partial / "tokens.bin", "wb")
        return self

    def append(self, ids: np.ndarray) -> None:
        """One document's ids, markers included."""
        if len(ids) and ids.max() >= self.vocab_size:
            raise ValueError(f"token store {self.folder}: token id {ids.max()} is outside the tokenizer's vocabulary "
                             f"of {self.vocab_size}")
        ids.astype(self.dtype).tofile(self.file)
        self.offsets.append(self.offsets[-1] + len(ids))
        self.max_id = max(self.max_id, int(ids.max()) if len(ids) else -1)

    @property
    def documents(self) -> int:
        return len(self.offsets) - 1

    @property
    def tokens(self) -> int:
        return self.offsets[-1]

    def __exit__(self, error_type, *_) -> None:
        self.file.close()
        try:
            if error_type is None:
                self._finish()
        finally:
            shutil.rmtree(self.partial, ignore_errors=True)  # gone already once renamed

    def _finish(self) -> None:
        if self.offsets[-1] == 0:
            source = self.meta["source"]
            named = source if isinstance(source, str) else f"data.sources.{source['source']}, {source['role']} share"
            raise ValueError(f"token store {self.folder}: its source is empty ({named})")
        np.save(self.partial / "documents.npy", np.frombuffer(self.offsets, dtype=np.int64))
        meta = {**self.meta, "documents": self.documents, "tokens": self.tokens, "dtype": self.dtype.name,
                "vocab_size": self.vocab_size, "max_id": self.max_id}
        (self.partial / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        shutil.rmtree(self.folder, ignore_errors=True)  # an older store
        self.partial.rename(self.folder)


def write_store(folder: str | Path, tokenizer, texts: Iterable[str], source: str,
                batch_chars: int = CHARS_PER_THREAD) -> TokenStore:
    """A store of `texts`, one document each, read and encoded batch by batch (`encode_in_batches`)."""
    with StoreWriter(folder, tokenizer, source) as store:
        for ids in encode_in_batches(tokenizer, texts, batch_chars):
            store.append(ids)
    return TokenStore.open(folder)


@dataclass(frozen=True, eq=False)
class TokenStore:
    """A store opened for reading: `tokens` is a read-only memory map of tokens.bin, whose pages are read as windows
    touch them; `store[i]` is document i, `len(store)` the number of documents."""
    folder: Path
    tokens: np.memmap
    documents: np.ndarray
    meta: dict

    @classmethod
    def open(cls, folder: str | Path) -> TokenStore:
        folder = Path(folder)
        if not (folder / "meta.json").is_file():
            raise FileNotFoundError(f"{folder} is not a token store: it has no meta.json")
        meta = json.loads((folder / "meta.json").read_text())
        tokens = np.memmap(folder / "tokens.bin", dtype=meta["dtype"], mode="r")
        documents = np.load(folder / "documents.npy", mmap_mode="r")
        if not len(tokens) == meta["tokens"] == documents[-1] or len(documents) != meta["documents"] + 1:
            raise ValueError(f"token store {folder}: tokens.bin, documents.npy and meta.json disagree")
        return cls(folder, tokens, documents, meta)

    def __len__(self) -> int:
        return len(self.documents) - 1

    def check_vocabulary(self, vocab_size: int) -> TokenStore:
        """Refuse a store whose ids a model with `vocab_size` embeddings cannot read (another model's tokenizer)."""
        max_id = self.meta.get("max_id")
        if max_id is None:
            max_id = int(self.tokens.max()) if len(self.tokens) else -1
        if max_id >= vocab_size:
            raise ValueError(f"token store {self.folder} holds token id {max_id}, outside the model's vocabulary of "
                             f"{vocab_size}: it was written with another tokenizer than the model's "
                             f"(data.tokenizer)")
        return self

    def __getitem__(self, i: int) -> np.ndarray:
        return self.tokens[self.documents[i] : self.documents[i + 1]]


def load_tokens(folder: str | Path) -> np.memmap:
    """A store's token ids end to end, memory-mapped: what every job slices its windows from."""
    return TokenStore.open(folder).tokens
