"""The export's config.json as vLLM and older transformers read it, beside transformers 5's `rope_parameters`.

vLLM maps `rope_type: longrope` to its Phi-3 rotary class: it reads short_factor, long_factor and
original_max_position_embeddings, ignores attention_factor, and derives its own scale
√(1 + ln(max_pos / orig) / ln orig) from original_max_position_embeddings — which is the switch length here, not
the original length, after a recovery search — unless short_mscale and long_mscale are given: so both are written,
equal to the attention scale. vLLM on transformers < 5 (and transformers < 5 itself) reads a legacy `rope_scaling`
dict, the top-level `rope_theta` (else it runs θ = 10,000) and, for the short/long switch, a top-level
original_max_position_embeddings (Phi-3's layout). transformers 5 accepts all of them, only warning about the two
mscale keys, and gives the same logits (tests/test_export_gguf.py).

May import: nothing of longrope (it edits the config.json that longrope.model.save_extended wrote).
"""
from __future__ import annotations

import json
from pathlib import Path


def add_vllm_keys(folder: str | Path) -> dict:
    """Add the keys vLLM and older stacks read to `folder`/config.json (written by longrope.model.save_extended);
    returns the new config."""
    path = Path(folder, "config.json")
    config = json.loads(path.read_text())
    rope = config["rope_parameters"]
    if rope.get("rope_type") != "longrope":
        raise ValueError(f"{path}: rope_parameters are not a LongRoPE scaling ({rope.get('rope_type')!r})")
    rope["short_mscale"] = rope["long_mscale"] = rope["attention_factor"]
    # `type` beside `rope_type`: the key Phi-3's configs carry and older readers look up first
    legacy = {"type": "longrope", **{key: value for key, value in rope.items() if key != "rope_theta"}}
    config.update(rope_theta=rope["rope_theta"], rope_scaling=legacy,
                  original_max_position_embeddings=rope["original_max_position_embeddings"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config
