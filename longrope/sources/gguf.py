"""A pretrained model in a GGUF file → a Hugging Face folder (fp32 safetensors, config.json with rope_parameters,
tokenizer files) that `AutoModelForCausalLM` and `AutoTokenizer` open with no custom code.

transformers dequantizes GGUF weights on load but refuses to save a model it loaded from GGUF, so the weights are
moved, unchanged, into a model built from the same config without its quantization entry. Needs the `gguf` and
`accelerate` packages (`pip install -e ".[gguf]"`).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

# GGUF architectures whose rotary module lives at model.model.rotary_emb in transformers 5 (see longrope/patching.py).
SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "phi3")


def gguf_architecture(path: str | Path) -> str:
    """`general.architecture` of a GGUF file, read from its header without loading any tensor."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("general.architecture")
    if field is None:
        raise ValueError(f"{path} has no general.architecture entry: not a model GGUF")
    return bytes(field.parts[field.data[0]]).decode()


def convert_gguf(gguf_path: str | Path, out: str | Path) -> None:
    """Write the HF folder `out`; nothing is left there unless the whole conversion succeeds."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, out = Path(gguf_path), Path(out)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file {gguf_path} does not exist")
    architecture = gguf_architecture(gguf_path)
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"{gguf_path.name}: architecture '{architecture}' is not supported "
                         f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
    source = dict(pretrained_model_name_or_path=gguf_path.parent, gguf_file=gguf_path.name)
    loaded = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
    config = loaded.config
    del config.quantization_config
    config.architectures = [type(loaded).__name__]
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict(), strict=True)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    AutoTokenizer.from_pretrained(**source).save_pretrained(staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
