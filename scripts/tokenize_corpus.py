"""Token ids: pretraining books, and held-out books split into search-fitness and evaluation regions."""
import sys

import numpy as np

from longrope.data.corpus import encode_documents, read_book, split_heldout
from longrope.data.tokenizer import load_tokenizer
from longrope.data.tokens import save_tokens

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

tokenizer = load_tokenizer(snakemake.input.tokenizer)
train = encode_documents(tokenizer, [read_book(p) for p in snakemake.input.train])
regions = [split_heldout(encode_documents(tokenizer, [read_book(p)]), snakemake.params.fitness_fraction)
           for p in snakemake.input.heldout]
fitness = np.concatenate([f for f, _ in regions])
evaluation = np.concatenate([e for _, e in regions])
for name, tokens in [("train", train), ("fitness", fitness), ("evaluation", evaluation)]:
    save_tokens(snakemake.output[name], tokens)
    print(f"{name}: {len(tokens):,} tokens")
