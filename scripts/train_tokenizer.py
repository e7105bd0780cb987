"""Train (BPE), declare (bytes) or copy (a pretrained model's own) the tokenizer, as a Hugging Face tokenizer folder."""
from longrope.data.sources import documents_of
from longrope.data.tokenizer import load_tokenizer, train_tokenizer
from longrope.logs import to_rule_log
from longrope.sources.hub import source_files

to_rule_log(snakemake.log[0])

kind = snakemake.params.kind
if kind == "pretrained":
    tokenizer = load_tokenizer(snakemake.input.pretrained)
    print(f"{snakemake.input.pretrained}: vocabulary {tokenizer.vocab_size}")
else:
    selection = snakemake.params.selection
    texts = list(documents_of(selection, source_files(selection.source, snakemake.input))) if kind == "bpe" else []
    tokenizer = train_tokenizer(kind, texts, snakemake.params.vocab_size)
    print(f"{kind} tokenizer, vocabulary {tokenizer.vocab_size}, trained on {len(texts)} documents")
print(f"document markers: BOS {tokenizer.bos_id}, EOS {tokenizer.eos_id}")
tokenizer.save(snakemake.output[0])
