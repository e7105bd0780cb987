"""LongRoPE: non-uniform RoPE rescaling for context-window extension (see README)."""
