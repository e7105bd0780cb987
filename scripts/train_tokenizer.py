"""Train (BPE), declare (bytes) or copy (a pretrained model's own) the tokenizer, as a Hugging Face tokenizer folder."""
import sys

from longrope.data.corpus import read_book
from longrope.data.tokenizer import load_tokenizer, train_tokenizer

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

if snakemake.params.kind == "pretrained":
    tokenizer = load_tokenizer(snakemake.input.pretrained)
    print(f"{snakemake.input.pretrained}: vocabulary {tokenizer.vocab_size}")
else:
    texts = [read_book(p) for p in snakemake.input.books]
    tokenizer = train_tokenizer(snakemake.params.kind, texts, snakemake.params.vocab_size)
    print(f"{snakemake.params.kind} tokenizer, vocabulary {tokenizer.vocab_size}, trained on {len(texts)} books")
print(f"document markers: BOS {tokenizer.bos_id}, EOS {tokenizer.eos_id}")
tokenizer.save(snakemake.output[0])
