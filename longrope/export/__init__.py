"""Exports of an extended model for the engines people serve it with: hf (the switch policy and the
stock-transformers parity check; the checkpoint itself is longrope.model.save_extended), vllm (the config.json keys
vLLM and older transformers read), gguf (one GGUF file for llama.cpp) and parity (the same held-out windows through
every engine). A new target is a module here.

May import: longrope.rope, model, patching, factors, data (windows), evaluation.stats (parity's intervals).
"""
