"""Text in, token ids out: corpora as sources and each role's share of one (sources), books of a corpus folder
(corpus), tokenizer folders (tokenizer), memory-mapped token stores (tokens), seeded windows and needle-driven fitness
windows (windows), paper-protocol fine-tuning chunks (chunks), synthetic passkey prompts (prompts).

May import: numpy, tokenizers, datasets. Nothing else of longrope: every other part reads its data through here.
"""
