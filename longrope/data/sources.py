"""Corpora as sources, and what each role takes from one.

A source (config `data.sources.<name>`) is one of
    books   bundled .txt.gz books under a folder, by name or glob; each book one document
    files   local files by path or glob (relative to the working directory, as Snakemake's paths): parquet,
            json/jsonl (also .gz), arrow, or txt/txt.gz (each file one document)
    hub     a dataset repository on the Hugging Face hub, its files fetched by pattern into the hub cache
            (longrope.sources.hub) and then read exactly as local files are
Rows of parquet, json and arrow files are read by `datasets`' own builders, streamed one file at a time, so that no
corpus is ever held whole and every error names its file.

Each role (`data.train`, `data.fitness`, `data.evaluation`) names a source. A source serving several roles declares
`split`: each role's share, either of its documents (`by: documents`, each document drawn to one role by a hash of
its position, so no document is shared) or of each document's tokens (`by: text`, the leading share to the first
role named: the bundled default's one held-out novel, which cannot be split by documents).

May import: numpy, datasets (lazily).
"""
from __future__ import annotations

import glob
import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from longrope.data.corpus import book_path, list_books, read_book

ROLES = ("train", "fitness", "evaluation")
FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".arrow": "arrow", ".txt": "txt"}


class SourceError(ValueError):
    """Bad source: the message names the config key and the file."""


@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # books | files | hub
    patterns: tuple[str, ...]  # book names or globs, file paths or globs, hub file patterns
    root: Path  # the books' folder (under the workflow); relative file paths are relative to the working directory
    format: str | None  # None: from each file's suffix
    text_field: str
    repo: str | None = None
    revision: str | None = None
    split_by: str = "documents"
    shares: tuple[tuple[str, float], ...] = ()  # (role, share) in the order written; () = one role takes all

    @classmethod
    def from_config(cls, name: str, spec: dict, workflow_dir: Path) -> Source:
        kinds = [kind for kind in ("books", "files", "hub") if kind in spec]
        if kinds not in (["books"], ["files"], ["files", "hub"]):
            raise SourceError(f"data.sources.{name}: give books, files, or hub with the files to take from it")
        kind = kinds[-1]
        split = dict(spec.get("split") or {})
        split_by = split.pop("by", "documents")
        patterns = spec["files"] if kind == "hub" else spec[kind]
        root = workflow_dir / spec.get("dir", "data/corpus") if kind == "books" else Path()
        return cls(name, kind, tuple(patterns), root, spec.get("format"),
                   spec.get("text_field", "text"), spec.get("hub"), spec.get("revision", "main") if kind == "hub"
                   else None, split_by, tuple(split.items()))

    @property
    def key(self) -> str:
        return f"data.sources.{self.name}"

    def describe(self) -> dict:
        """What the source is, independent of this machine's paths: a store's identity and provenance."""
        where = {"hub": self.repo, "revision": self.revision} if self.kind == "hub" else {}
        return {"kind": self.kind, **where, "patterns": list(self.patterns), "format": self.format,
                "text_field": self.text_field, "split_by": self.split_by, "shares": dict(self.shares)}

    def files(self, snapshot: str | Path | None = None) -> list[Path]:
        """Every file of the source, sorted within each pattern, in pattern order; a pattern matching nothing is an
        error. Hub files are looked up in `snapshot`, the fetched repository's folder."""
        if self.kind == "books":
            try:
                return [book_path(self.root, name) for name in list_books(self.root, list(self.patterns))]
            except FileNotFoundError as error:
                raise SourceError(f"{self.key}.books: {error}") from None
        base = Path(snapshot) if self.kind == "hub" else self.root
        found: dict[Path, None] = {}  # ordered and deduplicated at once: a PG19-sized folder has 28k files
        for pattern in self.patterns:
            matched = sorted(Path(p) for p in glob.glob(str(base / pattern), recursive=True) if Path(p).is_file())
            if not matched:
                raise SourceError(f"{self.key}.files: no file in {base} matches '{pattern}'")
            found.update(dict.fromkeys(matched))
        for path in found:
            self.format_of(path)
        return list(found)

    def format_of(self, path: Path) -> str:
        if self.kind == "books":
            return "books"
        suffixes = [s for s in path.suffixes if s != ".gz"]
        fmt = self.format or (FORMATS.get(suffixes[-1]) if suffixes else None)
        if fmt is None:
            raise SourceError(f"{self.key}: cannot tell the format of {path.name}; set {self.key}.format "
                              f"(one of parquet, json, arrow, txt)")
        return fmt


def read_documents(source: Source, files: list[Path]) -> Iterator[str]:
    """Every document's text, file by file, row by row; empty texts are skipped."""
    for path in files:
        for text in _read_file(source, path):
            if text:
                yield text


def _read_file(source: Source, path: Path) -> Iterator[str]:
    fmt = source.format_of(path)
    if fmt == "books":
        yield read_book(path)
        return
    try:
        if fmt == "txt":
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as f:
                yield f.read()
            return
        import datasets

        rows = datasets.load_dataset(fmt, data_files=[str(path)], split="train", streaming=True)
        for i, row in enumerate(rows):
            if source.text_field not in row:
                raise SourceError(f"{source.key}.text_field: {path} has no field '{source.text_field}' "
                                  f"(row {i} has {', '.join(sorted(row)) or 'no fields'})")
            text = row[source.text_field]
            if not isinstance(text, str):
                raise SourceError(f"{source.key}.text_field: '{source.text_field}' in {path}, row {i}, is "
                                  f"{type(text).__name__}, not text")
            yield text
    except SourceError:
        raise
    except UnicodeDecodeError as error:
        raise SourceError(f"{source.key}: {path} is not UTF-8 text: {error}") from None
    except Exception as error:  # a builder's own error (bad JSON, not parquet): say which file and source
        raise SourceError(f"{source.key}: cannot read {path} as {fmt}: {type(error).__name__}: {error}") from None


@dataclass(frozen=True)
class Selection:
    """What one role takes from its source: all of it, a share of its documents, or a share of each document."""
    source: Source
    role: str

    @property
    def bounds(self) -> tuple[float, float]:
        """The role's share of the source as an interval of [0, 1], in the order the split names the roles."""
        start = 0.0
        for role, share in self.source.shares:
            if role == self.role:
                return start, start + share
            start += share
        return 0.0, 1.0

    def takes_document(self, index: int) -> bool:
        if self.source.split_by == "text" or not self.source.shares:
            return True
        low, high = self.bounds
        return low <= _uniform(index) < high

    def cut(self, ids: np.ndarray) -> np.ndarray:
        """The role's share of one document's ids (by: text), else the document."""
        if self.source.split_by != "text" or not self.source.shares:
            return ids
        low, high = self.bounds
        return ids[int(len(ids) * low) : int(len(ids) * high)]

    def describe(self) -> dict:
        return {"source": self.source.name, **self.source.describe(), "role": self.role, "bounds": self.bounds}

    def store_name(self, tokenizer: dict) -> str:
        """The store's folder name: the source's name, the role where the source is split, and a digest of
        everything that decides its ids (source, share, tokenizer), so that configs sharing both share the store."""
        identity = json.dumps({**self.describe(), "tokenizer": tokenizer}, sort_keys=True)
        digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
        role = f"-{self.role}" if self.source.shares else ""
        return f"{self.source.name}{role}-{digest}"


def _uniform(index: int) -> float:
    """A document's fixed draw in [0, 1): its position hashed, so the split is the same on every machine."""
    digest = hashlib.blake2b(str(index).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def documents_of(selection: Selection, files: list[Path]) -> Iterator[str]:
    """The documents a role takes, in the source's order (by: text cuts them after tokenizing, see `cut`)."""
    return (text for i, text in enumerate(read_documents(selection.source, files)) if selection.takes_document(i))
