"""Train (BPE) or declare (bytes) the tokenizer on the pretraining books."""
import sys

from longrope.data import read_book, train_tokenizer

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

texts = [read_book(p) for p in snakemake.input.books]
tokenizer = train_tokenizer(snakemake.params.kind, texts, snakemake.params.vocab_size)
tokenizer.save(snakemake.output[0])
print(f"{tokenizer.kind} tokenizer, vocabulary {tokenizer.vocab_size}, trained on {len(texts)} books")
