"""Fine-tuning chunks, the paper's protocol: the training store cut into fixed chunks of the training length, each
bookended with BOS and EOS, drawn by a seeded permutation without replacement.

Layout. A chunk is `length` tokens (seq_len + 1: the training length and the one shifted target): BOS, the
content, EOS. A bookend the tokenizer lacks (its id is None) is left out and the content is one token longer. With
c = length − bookends, chunk k's content is tokens [k·c, (k + 1)·c) of the store read end to end, the store's own
document markers included where they fall; the store holds len(tokens) // c chunks, and its last len(tokens) mod c
tokens are never trained on.

Order. The rows drawn from chunks are numbered across the run, row r = step × rows per step + i. Epoch
e = r // chunks is a permutation of every chunk from np.random.default_rng([seed, e]), and row r takes its
(r mod chunks)-th entry: no chunk repeats within an epoch, and a row's chunk depends on (seed, r) alone, so a
resumed run sees the same batches.

May import: numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True, eq=False)
class Chunks:
    tokens: np.ndarray  # the store's tokens end to end (a memory map)
    length: int         # tokens per chunk, bookends included
    bos_id: int | None
    eos_id: int | None

    def __post_init__(self):
        if self.content < 1:
            raise ValueError(f"a chunk of {self.length} tokens has no room for content between its BOS and EOS")

    @property
    def content(self) -> int:
        """Store tokens per chunk."""
        return self.length - (self.bos_id is not None) - (self.eos_id is not None)

    def __len__(self) -> int:
        return len(self.tokens) // self.content

    def __getitem__(self, k: int) -> np.ndarray:
        head = [] if self.bos_id is None else [self.bos_id]
        tail = [] if self.eos_id is None else [self.eos_id]
        body = self.tokens[k * self.content : (k + 1) * self.content]
        return np.concatenate([np.array(head, np.int64), body.astype(np.int64), np.array(tail, np.int64)])

    def row(self, r: int, seed: int) -> np.ndarray:
        """The chunk that row `r` of a run seeded with `seed` trains on (the module's Order)."""
        epoch, position = divmod(r, len(self))
        return self[int(epoch_order(len(self), seed, epoch)[position])]

    def supply_error(self, needed: int, epochs: int) -> str | None:
        """Why `needed` rows cannot be drawn within `epochs` epochs, or None when they can."""
        if needed <= len(self) * epochs:
            return None
        has = f"the training store holds {len(self)} chunks of {self.length} tokens and the run needs {needed}"
        if epochs == 1:
            return f"{has}; epochs > 1 lets chunks repeat, each epoch in a new order"
        return f"{has}, more than {epochs} epochs of them ({len(self) * epochs})"


@lru_cache(maxsize=2)  # consecutive steps read the same epoch, occasionally the next one
def epoch_order(chunks: int, seed: int, epoch: int) -> np.ndarray:
    order = np.random.default_rng([seed, epoch]).permutation(chunks)
    order.setflags(write=False)
    return order
