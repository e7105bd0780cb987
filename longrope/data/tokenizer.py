"""Tokenizers kept as Hugging Face tokenizer folders: bytes, a byte-level BPE trained here, or a model's own."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# Tokenizers. Every kind is a Hugging Face `tokenizers` tokenizer kept as a tokenizer folder (tokenizer.json +
# tokenizer_config.json) that `AutoTokenizer.from_pretrained` opens with no custom code: bytes by default (ids
# 0-255 are the UTF-8 bytes), a byte-level BPE trained here, or a pretrained model's own tokenizer.


class Tokenizer:
    """A `tokenizers` tokenizer and its model's document markers, read from its own special tokens (never from
    hard-coded names). Documents are laid out as BOS doc EOS when the tokenizer itself starts a sequence with BOS,
    else as doc EOS (SmolLM2, Qwen2); BOS alone separates them when there is no EOS."""

    def __init__(self, tokenizer, config: dict, source: str = "tokenizer", sha256: str | None = None):
        # sha256: of the tokenizer.json it was loaded from (None for one built here), recorded in its token stores
        self._tok, self.config, self.sha256 = tokenizer, config, sha256
        self.vocab_size = tokenizer.get_vocab_size()
        bos, eos = (self._token_id(config.get(key)) for key in ("bos_token", "eos_token"))
        if bos is None and eos is None:
            raise ValueError(f"{source} has neither a BOS nor an EOS token to separate documents")
        starts_with_bos = bos is not None and tokenizer.encode("a", add_special_tokens=True).ids[:1] == [bos]
        self.bos_id = bos if starts_with_bos or eos is None else None
        self.eos_id = eos

    def _token_id(self, token) -> int | None:
        content = token.get("content") if isinstance(token, dict) else token
        return None if content is None else self._tok.token_to_id(content)

    @classmethod
    def load(cls, folder: str | Path) -> "Tokenizer":
        """A tokenizer folder: this project's, or a Hugging Face model's, whose config.json names the special token
        ids where its tokenizer_config.json does not."""
        from tokenizers import Tokenizer as HFTokenizer

        folder = Path(folder)
        if not (folder / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{folder} has no tokenizer.json")
        tokenizer = HFTokenizer.from_file(str(folder / "tokenizer.json"))
        config, model_config = (_read_json(folder / name) for name in ("tokenizer_config.json", "config.json"))
        for key in ("bos", "eos"):
            if config.get(f"{key}_token") is None and isinstance(model_config.get(f"{key}_token_id"), int):
                config[f"{key}_token"] = tokenizer.id_to_token(model_config[f"{key}_token_id"])
        sha256 = hashlib.sha256((folder / "tokenizer.json").read_bytes()).hexdigest()
        return cls(tokenizer, config, source=f"the tokenizer in {folder}", sha256=sha256)

    def encode(self, text: str) -> list[int]:
        # The post-processor's BOS is left out: the documents' layout (longrope.data.tokens) places the markers itself.
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` of many texts in one call, which the fast tokenizer spreads over its threads (RAYON_NUM_THREADS,
        else every core)."""
        return [encoding.ids for encoding in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self._tok.decode(list(ids))

    def save(self, folder: str | Path) -> None:
        """A tokenizer folder; saving into a model folder makes that folder a complete Hugging Face checkpoint."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(json.dumps(self.config, indent=2) + "\n")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _with_document_markers(tokenizer) -> Tokenizer:
    """A tokenizer built here: <s> starts every sequence and documents end with </s>. As in every Hugging Face
    tokenizer, the literal text "<s>" or "</s>" encodes as that special token (the bundled books have none)."""
    from tokenizers import processors

    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))])
    return Tokenizer(tokenizer, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"})


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's printable stand-in character for every byte, the alphabet of byte-level pre-tokenization."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return {b: chr(b if b in printable else next(extra)) for b in range(256)}


def byte_tokenizer() -> Tokenizer:
    """UTF-8 bytes as ids 0-255, <s> = 256, </s> = 257: byte-level pre-tokenization and a BPE with no merges."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    tokenizer = HFTokenizer(models.BPE(vocab={ch: b for b, ch in _byte_alphabet().items()}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<s>", "</s>"])
    return _with_document_markers(tokenizer)


def bpe_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    from tokenizers import ByteLevelBPETokenizer

    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(texts, vocab_size=vocab_size, special_tokens=["<s>", "</s>"], show_progress=False)
    return _with_document_markers(trainer._tokenizer)


def train_tokenizer(kind: str, texts: list[str], vocab_size: int | None = None) -> Tokenizer:
    if kind == "byte":
        return byte_tokenizer()
    if kind == "bpe":
        if not vocab_size:
            raise ValueError("tokenizer kind 'bpe' needs vocab_size")
        return bpe_tokenizer(texts, vocab_size)
    raise ValueError(f"unknown tokenizer kind '{kind}' (expected 'byte' or 'bpe')")


load_tokenizer = Tokenizer.load

