"""Text in, token ids out: books of a corpus folder (corpus), tokenizer folders (tokenizer), memory-mapped
token stores (tokens), seeded windows and needle-driven fitness windows (windows), synthetic passkey prompts (prompts).

May import: numpy, tokenizers. Nothing else of longrope: every other part reads its data through here.
"""
