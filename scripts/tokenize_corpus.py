"""Token stores: the pretraining books, and the held-out books split into a search-fitness and an evaluation store."""
import os
import sys

from longrope.data.corpus import read_book, split_heldout
from longrope.data.tokenizer import load_tokenizer
from longrope.data.tokens import CHARS_PER_THREAD, StoreWriter, TokenStore, encode_in_batches, write_store

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
# The batch encoder runs on the job's threads, not on every core of the machine; it reads this at its first batch.
os.environ["RAYON_NUM_THREADS"] = str(snakemake.threads)
batch_chars = snakemake.threads * CHARS_PER_THREAD


def books(paths):
    return (read_book(path) for path in paths)  # read as the batches take them: one batch of text in memory


def described(paths) -> str:
    return f"{len(paths)} book(s): {', '.join(map(str, paths))}"


tokenizer = load_tokenizer(snakemake.input.tokenizer)
out, fraction, heldout = snakemake.output, snakemake.params.fitness_fraction, snakemake.input.heldout
write_store(out.train, tokenizer, books(snakemake.input.train), described(snakemake.input.train), batch_chars)
# Each held-out book is tokenized whole, then cut: its leading share is search-fitness text, the rest evaluation.
with (StoreWriter(out.fitness, tokenizer, f"the leading {fraction} of {described(heldout)}") as fitness,
      StoreWriter(out.evaluation, tokenizer, f"all but the leading {fraction} of {described(heldout)}") as evaluation):
    for ids in encode_in_batches(tokenizer, books(heldout), batch_chars):
        fitness_part, evaluation_part = split_heldout(ids, fraction)
        fitness.append(fitness_part)
        evaluation.append(evaluation_part)
for name in ("train", "fitness", "evaluation"):
    store = TokenStore.open(out[name])
    print(f"{name}: {len(store.tokens):,} tokens in {len(store)} document(s), {store.meta['dtype']}")
