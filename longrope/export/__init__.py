"""Exports of an extended model for the engines people serve with: today the stock-transformers checkpoint's
parity check (hf; the checkpoint itself is longrope.model.save_extended). A new target (GGUF, vLLM) is a module here.

May import: longrope.rope, model, patching, factors.
"""
