"""The GGUF export: the extended Hugging Face checkpoint (results/export/model) as one GGUF file that llama.cpp
runs with the model's LongRoPE scaling, written with gguf-py (the `gguf` extra), one tensor at a time.

What llama.cpp reads from a Llama GGUF (its source; measured against transformers in issue 21):
- `llama.rope.scaling.type = longrope` makes it load `rope_factors_long.weight` and `rope_factors_short.weight`
  (literal names: gguf-py's Llama tensor list lacks them), one λ per rotary pair. A factor divides its pair's
  frequency there as in longrope.rope, so the values are written unchanged.
- A context uses the long set when its length per sequence (rounded up to a multiple of 256) exceeds
  `llama.rope.scaling.original_context_length`: the switch length, transformers' original_max_position_embeddings.
- `llama.rope.scaling.attn_factor` multiplies cos and sin, as transformers' attention_factor.
- No `rope.scaling.factor`: llama.cpp would add position interpolation on top of the factors.
- `llama.context_length` is the extended length.
- q and k rows are permuted from transformers' rotate-half layout (pair i = dims i and i + d/2) to llama.cpp's
  interleaved one (pair i = dims 2i and 2i + 1).
n̂ (the first positions kept at the original RoPE) has no equivalent: a scaling with n̂ > 0 is refused (export.n_hat).
The tokenizer is written as llama.cpp's `gpt2` BPE (token texts, types, merges, special ids): the byte-level BPEs
of this package (bytes, a BPE trained here) and of models such as SmolLM2; another kind is refused.

May import: longrope.rope, longrope.model.
"""
from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np

from longrope.model import SCALING_FILE, saved_scaling
from longrope.rope import RopeScaling

# export.gguf.dtype → the weight matrices' type and the file type llama.cpp reports
WEIGHT_TYPES = {
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
LONG_FACTORS, SHORT_FACTORS = "rope_factors_long.weight", "rope_factors_short.weight"

# llama.cpp's name (tokenizer.ggml.pre) of the byte-level pre-tokenizations whose split it reproduces with its own
# regexes, keyed by the tokenizer.json steps in order: (type, use_regex of ByteLevel / individual_digits of Digits).
PRE_TOKENIZERS = {
    (("ByteLevel", True),): "gpt-2",
    (("Digits", True), ("ByteLevel", True)): "smollm",  # single digits, then GPT-2's regex
}
# llama.cpp refuses a gpt2 vocabulary without a merges array, and gguf-py cannot write an empty one. A tokenizer
# without merges (this package's byte tokenizer) gets this one, which never applies: BPE starts from single
# characters, and no merge builds the two-character left side.
INERT_MERGE = "ĠĠ Ġ"


def write_gguf(folder: str | Path, out: str | Path, dtype: str = "f16") -> dict:
    """Write `out` from the exported folder; nothing is left there unless the whole file is written. Returns what
    the file carries, for the log."""
    folder, out = Path(folder), Path(out)
    if dtype not in WEIGHT_TYPES:
        raise ValueError(f"export.gguf.dtype must be one of {', '.join(WEIGHT_TYPES)}, got {dtype!r}")
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise ValueError(f"{folder}: the GGUF export writes Llama-architecture models, this one is "
                         f"{config.get('model_type')!r} ({', '.join(config.get('architectures') or [])})")
    scaling = saved_scaling(folder)
    if scaling is None:
        raise ValueError(f"{folder} has no {SCALING_FILE}: not a model this package extended")
    if scaling.n_hat:  # llama.cpp would run another model: one model, one forward
        raise ValueError(
            f"{folder}: the exported scaling keeps the original RoPE for its first {scaling.n_hat} positions "
            f"(n̂ = {scaling.n_hat}), which llama.cpp cannot run; export with export.n_hat: zero (the exported stages "
            "search n̂ = 0) to write a GGUF")
    summary = {"n_hat": 0}

    weight_type, file_type = WEIGHT_TYPES[dtype]
    staging = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(staging, "llama")
    try:
        head_dim = _write_hyperparameters(writer, config, scaling, file_type)
        summary.update(_write_tokenizer(writer, folder, config["vocab_size"]))
        factors = _factor_tensors(scaling, head_dim)
        for name, values in factors.items():
            writer.add_tensor_info(name, values.shape, values.dtype, values.nbytes)
        sources = _tensor_sources(folder, config, weight_type)
        for name, (_, _, shape, qtype) in sources.items():
            size = int(np.prod(gguf.quants.quant_shape_to_byte_shape(shape, qtype)))
            writer.add_tensor_info(name, shape, np.dtype(np.float32), size, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for values in factors.values():
            writer.write_tensor_data(values)
        for name, (file, key, _, qtype) in sources.items():
            writer.write_tensor_data(gguf.quants.quantize(_read(file, key, name, config), qtype))
        writer.close()
        staging.replace(out)
    finally:
        writer.close()
        staging.unlink(missing_ok=True)
    types = sorted({qtype.name for *_, qtype in sources.values()})
    return {**summary, "dtype": dtype, "tensor_types": types, "tensors": len(sources) + len(factors),
            "context_length": scaling.target_length, "original_context_length": scaling.switch_length,
            "attn_factor": scaling.attention_scale, "short_set": "searched" if scaling.short_factors else "= long set",
            "bytes": out.stat().st_size}


def _write_hyperparameters(writer, config: dict, scaling: RopeScaling, file_type) -> int:
    """llama.cpp's Llama hyperparameters and LongRoPE keys; returns the rotary head dimension."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    writer.add_context_length(scaling.target_length)
    writer.add_embedding_length(hidden)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    if head_dim != hidden // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
    writer.add_rope_scaling_orig_ctx_len(scaling.switch_length)
    writer.add_rope_scaling_attn_factors(scaling.attention_scale)
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    return head_dim


def _factor_tensors(scaling: RopeScaling, head_dim: int) -> dict[str, np.ndarray]:
    """The long and short sets (the short one equal to the long one when the scaling has none), float32."""
    for name, factors in (("factors", scaling.factors), ("short_factors", scaling.short_factors)):
        if factors is not None and len(factors) != head_dim // 2:
            raise ValueError(f"{SCALING_FILE}: {len(factors)} {name} for a rotary head dimension of {head_dim} "
                             f"({head_dim // 2} pairs)")
    return {LONG_FACTORS: np.array(scaling.factors, dtype=np.float32),
            SHORT_FACTORS: np.array(scaling.short_factors or scaling.factors, dtype=np.float32)}


def _tensor_sources(folder: Path, config: dict, weight_type) -> dict[str, tuple[Path, str, tuple[int, ...], object]]:
    """llama.cpp name → (safetensors file, transformers name, shape, GGUF type) of every weight in the folder."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():  # a sharded checkpoint
        files = {key: folder / file for key, file in json.loads(index.read_text())["weight_map"].items()}
    else:
        with safe_open(folder / "model.safetensors", framework="pt") as f:
            files = dict.fromkeys(f.keys(), folder / "model.safetensors")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    sources = {}
    for key in sorted(files):
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"{folder}: tensor {key} has no llama.cpp Llama name")
        with safe_open(files[key], framework="pt") as f:
            shape = tuple(f.get_slice(key).get_shape())
        sources[name] = (files[key], key, shape, _tensor_type(shape, weight_type))
    return sources


def _tensor_type(shape: tuple[int, ...], weight_type):
    """Norms and biases stay float32 (as llama.cpp's converter keeps them); a matrix whose rows are not whole blocks
    of the quantized type is written f16."""
    if len(shape) == 1:
        return gguf.GGMLQuantizationType.F32
    block = gguf.GGML_QUANT_SIZES[weight_type][0]
    return weight_type if shape[-1] % block == 0 else gguf.GGMLQuantizationType.F16


def _read(file: Path, key: str, name: str, config: dict) -> np.ndarray:
    """One weight as float32, q and k rows permuted to llama.cpp's interleaved rotary pairs."""
    from safetensors import safe_open

    with safe_open(file, framework="pt") as f:
        values = f.get_tensor(key).float().numpy()
    kind = name.split(".")[-2]
    if kind == "attn_q":
        return permute_rotary(values, config["num_attention_heads"])
    if kind == "attn_k":
        return permute_rotary(values, config.get("num_key_value_heads") or config["num_attention_heads"])
    return values


def permute_rotary(values: np.ndarray, heads: int) -> np.ndarray:
    """q or k projection rows (a weight or a bias) of `heads` heads from rotate-half order (within a head: the first
    halves of all pairs, then the second halves) to interleaved order (each pair's two halves side by side)."""
    head_dim = values.shape[0] // heads
    return np.ascontiguousarray(
        values.reshape(heads, 2, head_dim // 2, *values.shape[1:]).swapaxes(1, 2).reshape(values.shape))


def _write_tokenizer(writer, folder: Path, vocab_size: int) -> dict:
    """The folder's tokenizer.json as llama.cpp's gpt2 BPE: one token per embedding row (ids the tokenizer does not
    use become [PAD<id>], as llama.cpp's converter writes them), special ids, BOS policy and chat template."""
    path = folder / "tokenizer.json"
    tokenizer = json.loads(path.read_text())
    model, decoder = tokenizer["model"], tokenizer.get("decoder") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder.get("type") != "ByteLevel":
        raise ValueError(f"{path}: the GGUF export writes byte-level BPE tokenizers (GPT-2's kind), not a "
                         f"{model.get('type')} model with a {decoder.get('type')} decoder")
    if tokenizer.get("normalizer") is not None:
        raise ValueError(f"{path}: a tokenizer normalizer ({tokenizer['normalizer'].get('type')}) has no llama.cpp "
                         "equivalent")
    pre = _pre_tokenizer(path, tokenizer.get("pre_tokenizer") or {}, bool(model["merges"]))

    texts = {i: text for text, i in model["vocab"].items()}
    types = dict.fromkeys(texts, gguf.TokenType.NORMAL)
    for added in tokenizer.get("added_tokens", []):
        texts[added["id"]] = added["content"]
        types[added["id"]] = gguf.TokenType.CONTROL if added["special"] else gguf.TokenType.USER_DEFINED
    if max(texts) >= vocab_size:
        raise ValueError(f"{path}: token id {max(texts)} has no embedding row (the model has {vocab_size})")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list([texts.get(i, f"[PAD{i}]") for i in range(vocab_size)])
    writer.add_token_types([types.get(i, gguf.TokenType.USER_DEFINED) for i in range(vocab_size)])
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size)
    merges = len(special.merges)
    special.merges = special.merges or [INERT_MERGE]
    special.add_to_gguf(writer, quiet=True)
    return {"tokenizer": f"gpt2 BPE, pre-tokenizer {pre}", "merges": merges, "special_ids": special.special_token_ids}


def _pre_tokenizer(path: Path, spec: dict, has_merges: bool) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenization. Without merges every byte is its own token, however
    the text is split; with merges the split must be one llama.cpp knows."""
    steps = spec.get("pretokenizers", []) if spec.get("type") == "Sequence" else [spec]
    byte_level = steps[-1] if steps else {}
    if byte_level.get("type") != "ByteLevel" or byte_level.get("add_prefix_space"):
        raise ValueError(f"{path}: pre-tokenization must end in a ByteLevel step without add_prefix_space "
                         f"(llama.cpp adds no prefix space), not {spec}")
    if not has_merges:
        return "gpt-2"
    shape = tuple((step.get("type"), step.get("use_regex", step.get("individual_digits", True))) for step in steps)
    if shape not in PRE_TOKENIZERS:
        raise ValueError(f"{path}: no llama.cpp pre-tokenizer is known to split text as {spec} (known: "
                         f"{', '.join(PRE_TOKENIZERS.values())})")
    return PRE_TOKENIZERS[shape]
