"""The exports for other engines: the GGUF read back as llama.cpp reads it (keys, tensors, types, tokenizer, and a
forward computed from the file alone as llama.cpp's Llama graph does), the vLLM keys of config.json, the switch
policy, and their config checks; and llama.cpp itself (llama-cpp-python) on the GGUF."""
import json
import subprocess
import sys

import gguf
import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT
from longrope.data.tokenizer import byte_tokenizer, train_tokenizer
from longrope.export.gguf import permute_rotary, write_gguf
from longrope.export.hf import export_checkpoint, switched_scaling
from longrope.export.vllm import add_vllm_keys
from longrope.model import load_model, save_extended
from longrope.patching import apply_rope_scaling
from longrope.plan import Plan, PlanError
from longrope.rope import RopeScaling

LONG = [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 8.0]
SHORT = [1.0, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.5]
SCALING = RopeScaling("longrope", 32, 256, factors=LONG, short_factors=SHORT, short_length=64)
INSIDE, BEYOND = 48, 200  # the short set (at most 64 positions) and the long set


def tiny_llama(kv_heads: int = 2, vocab_size: int = 258):
    """conftest's tiny Llama (2 heads of 16), with `kv_heads` key/value heads."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=kv_heads, max_position_embeddings=32,
                         rope_parameters={"rope_type": "default", "rope_theta": 500.0}, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:  # sharp attention, so that positions change the logits
            layer.self_attn.q_proj.weight.mul_(30)
            layer.self_attn.k_proj.weight.mul_(30)
        model.model.norm.weight.mul_(10)  # logits of several units, as a trained model's
    return model


def export(model, folder, scaling=SCALING, tokenizer=None):
    """What the export rule writes (export_checkpoint): the checkpoint with its scaling, the vLLM keys, the
    tokenizer; from the model saved plainly beside it."""
    source = folder.with_name(f"{folder.name}-source")
    model.save_pretrained(source)
    (tokenizer or byte_tokenizer()).save(source)
    export_checkpoint(source, scaling, "dynamic", source, folder)
    return folder


@pytest.fixture
def exported(tmp_path):
    return export(tiny_llama(), tmp_path / "model")


def read(path):
    """(metadata, {name: (GGUF type, ggml shape, float64 values in transformers' shape)}) of a GGUF file."""
    reader = gguf.GGUFReader(str(path))
    fields = {name: field.contents() for name, field in reader.fields.items()}
    tensors = {t.name: (t.tensor_type, tuple(int(n) for n in t.shape),
                        gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)) for t in reader.tensors}
    return fields, tensors


def stock_logits(folder, ids):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(ids).logits[0]


def llama_cpp_logits(path, ids, n_ctx):
    """The logits llama.cpp's Llama graph computes from the GGUF alone, in float64: RMS norms, rotary pairs
    interleaved (2i, 2i + 1) with frequencies base^(-2i/d) divided by the long factors when the context per
    sequence (`n_ctx`; llama.cpp rounds it up to a multiple of 256) exceeds original_context_length, else the
    short ones, cos and sin times attn_factor, grouped-query attention, SwiGLU, output = token_embd when tied."""
    meta, tensors = read(path)
    w = {name: torch.from_numpy(values) for name, (_, _, values) in tensors.items()}
    heads, kv_heads = meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]
    d, eps = meta["llama.rope.dimension_count"], meta["llama.attention.layer_norm_rms_epsilon"]
    long = n_ctx > meta["llama.rope.scaling.original_context_length"]
    factors = w["rope_factors_long.weight" if long else "rope_factors_short.weight"]
    t = len(ids)
    theta = torch.arange(t, dtype=torch.float64)[:, None] * meta["llama.rope.freq_base"] ** (
        -2 * torch.arange(d // 2, dtype=torch.float64) / d) / factors
    cos, sin = (f(theta) * meta["llama.rope.scaling.attn_factor"] for f in (torch.cos, torch.sin))

    def rms(x, weight):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight

    def rope(x):  # (heads, T, d)
        even, odd = x[..., 0::2], x[..., 1::2]
        return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)

    h = w["token_embd.weight"][ids]
    for i in range(meta["llama.block_count"]):
        b = {name.split(".", 2)[2]: v for name, v in w.items() if name.startswith(f"blk.{i}.")}
        x = rms(h, b["attn_norm.weight"])
        q = rope((x @ b["attn_q.weight"].T).view(t, heads, d).transpose(0, 1))
        k = rope((x @ b["attn_k.weight"].T).view(t, kv_heads, d).transpose(0, 1))
        v = (x @ b["attn_v.weight"].T).view(t, kv_heads, d).transpose(0, 1)
        k, v = (y.repeat_interleave(heads // kv_heads, dim=0) for y in (k, v))
        scores = (q @ k.transpose(1, 2)) / d ** 0.5 + torch.full((t, t), -torch.inf).triu(1)
        h = h + (scores.softmax(-1) @ v).transpose(0, 1).reshape(t, heads * d) @ b["attn_output.weight"].T
        x = rms(h, b["ffn_norm.weight"])
        h = h + (torch.nn.functional.silu(x @ b["ffn_gate.weight"].T) * (x @ b["ffn_up.weight"].T)) @ b[
            "ffn_down.weight"].T
    return rms(h, w["output_norm.weight"]) @ w.get("output.weight", w["token_embd.weight"]).T


# ---------------------------------------------------------------------------------------------
# The GGUF


def test_gguf_carries_llama_cpps_longrope_keys_and_tensors(exported, tmp_path):
    summary = write_gguf(exported, tmp_path / "model.gguf", dtype="f32")
    meta, tensors = read(tmp_path / "model.gguf")
    assert meta["general.architecture"] == "llama" and meta["general.file_type"] == gguf.LlamaFileType.ALL_F32
    assert meta["llama.context_length"] == 256  # the extended length
    assert meta["llama.rope.scaling.type"] == "longrope"
    assert meta["llama.rope.scaling.original_context_length"] == 64  # the switch length
    assert meta["llama.rope.scaling.attn_factor"] == pytest.approx(SCALING.attention_scale, rel=1e-7)
    assert not [key for key in meta if key.endswith("rope.scaling.factor")]  # it would interpolate on top
    assert (meta["llama.rope.freq_base"], meta["llama.rope.dimension_count"]) == (500.0, 16)
    assert (meta["llama.block_count"], meta["llama.embedding_length"], meta["llama.feed_forward_length"]) == (2, 32, 64)
    assert (meta["llama.attention.head_count"], meta["llama.attention.head_count_kv"]) == (2, 2)
    # factors divide frequencies in llama.cpp as here: the same values, float32, one per rotary pair
    for name, factors in (("rope_factors_long.weight", LONG), ("rope_factors_short.weight", SHORT)):
        kind, shape, values = tensors[name]
        assert (kind, shape) == (gguf.GGMLQuantizationType.F32, (8,))
        assert np.array_equal(values, np.float32(factors))
    blocks = {f"blk.{i}.{name}.weight" for i in range(2) for name in (
        "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")}
    assert set(tensors) == blocks | {"token_embd.weight", "output_norm.weight", "rope_factors_long.weight",
                                     "rope_factors_short.weight"}  # tied: llama.cpp reuses token_embd as output
    assert tensors["blk.0.ffn_gate.weight"][1] == (32, 64)  # ggml's order: columns first
    assert summary["tensors"] == len(tensors) and summary["short_set"] == "searched"

    # q and k rows are llama.cpp's interleaved pairs; undoing the permutation gives transformers' weights back
    from safetensors.torch import load_file

    hf = load_file(exported / "model.safetensors")
    for i in range(2):
        for kind, proj in (("attn_q", "q_proj"), ("attn_k", "k_proj"), ("attn_v", "v_proj")):
            weights = hf[f"model.layers.{i}.self_attn.{proj}.weight"].numpy()
            written = tensors[f"blk.{i}.{kind}.weight"][2]
            assert np.array_equal(written, permute_rotary(weights, 2) if kind != "attn_v" else weights)
            if kind != "attn_v":
                undone = written.reshape(2, 8, 2, 32).swapaxes(1, 2).reshape(32, 32)
                assert np.array_equal(undone, weights) and not np.array_equal(written, weights)


def test_gguf_byte_tokenizer_is_a_gpt2_bpe_llama_cpp_loads(exported, tmp_path):
    write_gguf(exported, tmp_path / "model.gguf", dtype="f32")
    meta, _ = read(tmp_path / "model.gguf")
    alphabet = json.loads((exported / "tokenizer.json").read_text())["model"]["vocab"]
    assert (meta["tokenizer.ggml.model"], meta["tokenizer.ggml.pre"]) == ("gpt2", "gpt-2")
    assert meta["tokenizer.ggml.tokens"] == [*sorted(alphabet, key=alphabet.get), "<s>", "</s>"]
    assert meta["tokenizer.ggml.token_type"] == [gguf.TokenType.NORMAL] * 256 + [gguf.TokenType.CONTROL] * 2
    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"]) == (256, 257)
    assert meta["tokenizer.ggml.add_bos_token"] is True
    # llama.cpp refuses a gpt2 vocabulary without merges: one that never applies (no symbol has two characters)
    assert meta["tokenizer.ggml.merges"] == ["ĠĠ Ġ"]


@pytest.mark.parametrize("kv_heads", [2, 1], ids=["mha", "gqa"])
def test_the_gguf_forward_matches_stock_transformers_on_both_sides_of_the_switch(tmp_path, kv_heads):
    folder = export(tiny_llama(kv_heads), tmp_path / "model")
    write_gguf(folder, tmp_path / "model.gguf", dtype="f32")
    for length in (INSIDE, BEYOND):
        ids = torch.randint(0, 258, (length,), generator=torch.Generator().manual_seed(length))
        expected = stock_logits(folder, ids[None]).double()
        assert expected.abs().max() > 3
        assert (llama_cpp_logits(tmp_path / "model.gguf", ids, n_ctx=length) - expected).abs().max() < 1e-3
        # the other factor set would not do: the test sees which one is used
        wrong = llama_cpp_logits(tmp_path / "model.gguf", ids, n_ctx=BEYOND if length == INSIDE else INSIDE)
        assert (wrong - expected).abs().max() > 1


@pytest.mark.parametrize("dtype, kind, file_type, tolerance", [
    ("f16", gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16, 2e-3),
    ("bf16", gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16, 1e-2),
    ("q8_0", gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0, 1e-2),
])
def test_weight_types_of_the_gguf(exported, tmp_path, dtype, kind, file_type, tolerance):
    from safetensors.torch import load_file

    summary = write_gguf(exported, tmp_path / "model.gguf", dtype=dtype)
    meta, tensors = read(tmp_path / "model.gguf")
    assert meta["general.file_type"] == file_type and summary["dtype"] == dtype
    for name, (written, shape, _) in tensors.items():  # matrices in the type; norms and factors float32
        assert written == (kind if len(shape) == 2 else gguf.GGMLQuantizationType.F32), name
    assert np.array_equal(tensors["rope_factors_long.weight"][2], np.float32(LONG))
    embeddings = load_file(exported / "model.safetensors")["model.embed_tokens.weight"].numpy()
    error = np.abs(tensors["token_embd.weight"][2] - embeddings).max() / np.abs(embeddings).max()
    assert 0 < error < tolerance


def test_n_hat_is_refused_since_llama_cpp_would_run_another_model(tiny_model, tmp_path):
    scaling = RopeScaling("longrope", 32, 256, factors=LONG, n_hat=4)
    folder = tmp_path / "model"
    save_extended(apply_rope_scaling(tiny_model, scaling), scaling, folder)
    byte_tokenizer().save(folder)
    with pytest.raises(ValueError, match=r"first 4 positions \(n̂ = 4\), which llama.cpp cannot run; export with "
                                         r"export.n_hat: zero"):
        write_gguf(folder, tmp_path / "model.gguf")
    assert not list(tmp_path.glob("model.gguf*"))  # nothing half-written


def test_other_architectures_and_tokenizers_are_refused(exported, tmp_path):
    config = json.loads((exported / "config.json").read_text())
    (exported / "config.json").write_text(json.dumps({**config, "model_type": "qwen2"}))
    with pytest.raises(ValueError, match="writes Llama-architecture models, this one is 'qwen2'"):
        write_gguf(exported, tmp_path / "model.gguf")
    (exported / "config.json").write_text(json.dumps(config))
    tokenizer = json.loads((exported / "tokenizer.json").read_text())
    tokenizer["model"]["merges"] = [["Ġ", "t"]]
    tokenizer["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}
    (exported / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ValueError, match="no llama.cpp pre-tokenizer is known to split text as"):
        write_gguf(exported, tmp_path / "model.gguf")
    tokenizer["model"]["byte_fallback"] = True  # Llama 2's SentencePiece kind
    (exported / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ValueError, match="writes byte-level BPE tokenizers"):
        write_gguf(exported, tmp_path / "model.gguf")
    with pytest.raises(ValueError, match="export.gguf.dtype must be one of f32, f16, bf16, q8_0, got 'q4_k'"):
        write_gguf(exported, tmp_path / "model.gguf", dtype="q4_k")


def test_a_real_bpe_tokenizer_keeps_its_merges_specials_and_digit_split(tmp_path):
    """A SmolLM2-shaped tokenizer: specials inside the vocabulary at ids 0-2, merges, digits split one by one before
    GPT-2's regex (llama.cpp's `smollm`), fewer tokens than embedding rows; and this package's trained BPE."""
    from tokenizers import Tokenizer, pre_tokenizers

    sample = (ROOT / "README.md").read_text()[:4000] + " 2048 tokens, 128k"
    trained = train_tokenizer("bpe", [sample], vocab_size=300)
    assert trained.vocab_size == 300
    small = export(tiny_llama(), tmp_path / "small", tokenizer=trained)  # 258 embedding rows
    with pytest.raises(ValueError, match="token id 299 has no embedding row"):
        write_gguf(small, tmp_path / "small.gguf")

    folder = export(tiny_llama(vocab_size=320), tmp_path / "ours", tokenizer=trained)
    write_gguf(folder, tmp_path / "ours.gguf", dtype="f32")
    meta, _ = read(tmp_path / "ours.gguf")
    assert meta["tokenizer.ggml.pre"] == "gpt-2" and len(meta["tokenizer.ggml.merges"]) == 300 - 256 - 2
    assert meta["tokenizer.ggml.tokens"][:2] == ["<s>", "</s>"] and meta["tokenizer.ggml.tokens"][300:] == [
        f"[PAD{i}]" for i in range(300, 320)]
    assert meta["tokenizer.ggml.token_type"][:3] == [gguf.TokenType.CONTROL] * 2 + [gguf.TokenType.NORMAL]

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                      pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tokenizer.save(str(folder / "tokenizer.json"))
    write_gguf(folder, tmp_path / "smollm.gguf", dtype="f32")
    meta, _ = read(tmp_path / "smollm.gguf")
    assert meta["tokenizer.ggml.pre"] == "smollm"
    vocab = tokenizer.get_vocab()
    assert meta["tokenizer.ggml.tokens"][:300] == sorted(vocab, key=vocab.get)
    merges = json.loads((folder / "tokenizer.json").read_text())["model"]["merges"]
    assert meta["tokenizer.ggml.merges"] == [" ".join(pair) for pair in merges]
    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"]) == (0, 1)


# ---------------------------------------------------------------------------------------------
# vLLM's keys and the switch policy


def test_vllm_keys_leave_stock_transformers_logits_unchanged(tiny_model, tmp_path):
    folder = tmp_path / "model"
    save_extended(apply_rope_scaling(tiny_model, SCALING), SCALING, folder)
    ids = {n: torch.randint(0, 258, (1, n), generator=torch.Generator().manual_seed(n)) for n in (INSIDE, BEYOND)}
    before = {n: stock_logits(folder, x) for n, x in ids.items()}
    config = add_vllm_keys(folder)
    rope = config["rope_parameters"]
    assert rope["short_mscale"] == rope["long_mscale"] == rope["attention_factor"] == SCALING.attention_scale
    assert (rope["short_factor"], rope["long_factor"], rope["original_max_position_embeddings"]) == (SHORT, LONG, 64)
    assert config["rope_theta"] == 500.0 and config["original_max_position_embeddings"] == 64
    assert config["rope_scaling"] == {"type": "longrope", **{k: v for k, v in rope.items() if k != "rope_theta"}}
    assert json.loads((folder / "config.json").read_text()) == config
    ours = load_model(folder)  # this package's loader still applies longrope_scaling.json
    assert ours.model.rotary_emb.scaling == SCALING
    for n, x in ids.items():  # transformers 5 only warns about the mscale keys
        assert torch.equal(stock_logits(folder, x), before[n])
        with torch.no_grad():
            assert torch.equal(ours(x).logits[0], before[n])


def test_switch_long_gives_every_engine_the_long_set(tiny_model, tmp_path):
    assert switched_scaling(SCALING, "dynamic") == SCALING
    long = switched_scaling(SCALING, "long")
    assert long.short_factors is None and long.factors == SCALING.factors and long.switch_length == 32
    with pytest.raises(ValueError, match="export.switch must be one of dynamic, long, got 'short'"):
        switched_scaling(SCALING, "short")
    folder = export(tiny_model, tmp_path / "model", long)
    rope = json.loads((folder / "config.json").read_text())["rope_parameters"]
    assert rope["short_factor"] == rope["long_factor"] == LONG and rope["original_max_position_embeddings"] == 32
    summary = write_gguf(folder, tmp_path / "model.gguf", dtype="f32")
    _, tensors = read(tmp_path / "model.gguf")
    assert np.array_equal(tensors["rope_factors_short.weight"][2], np.float32(LONG)) and summary["short_set"] == (
        "= long set")
    ids = torch.randint(0, 258, (INSIDE,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = apply_rope_scaling(tiny_model, long)(ids[None]).logits[0]
    assert torch.equal(stock_logits(folder, ids[None]), expected)
    assert (llama_cpp_logits(tmp_path / "model.gguf", ids, n_ctx=INSIDE) - expected.double()).abs().max() < 1e-3


def test_export_tool_takes_factors_written_by_hand(tiny_model, tmp_path):
    """longrope.tools.export_model: any folder with a hand-written factors.json, as the export rule writes it."""
    tiny_model.save_pretrained(tmp_path / "base")
    byte_tokenizer().save(tmp_path / "base")
    (tmp_path / "factors.json").write_text(json.dumps({"scaling": {"method": "longrope", "original_length": 32,
                                                                   "target_length": 256, "factors": LONG}}))
    done = subprocess.run([sys.executable, "-m", "longrope.tools.export_model", "--model", tmp_path / "base",
                           "--factors", tmp_path / "factors.json", "--tokenizer", tmp_path / "base",
                           "--out", tmp_path / "out", "--gguf", tmp_path / "out.gguf", "--dtype", "f32"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rope = json.loads((tmp_path / "out" / "config.json").read_text())["rope_parameters"]
    assert rope["long_factor"] == rope["short_factor"] == LONG and rope["long_mscale"] == rope["attention_factor"]
    _, tensors = read(tmp_path / "out.gguf")
    assert np.array_equal(tensors["rope_factors_long.weight"][2], np.float32(LONG))
    ids = torch.randint(0, 258, (1, BEYOND), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = apply_rope_scaling(tiny_model, RopeScaling("longrope", 32, 256, factors=LONG))(ids).logits[0]
    assert torch.equal(stock_logits(tmp_path / "out", ids), expected)


# ---------------------------------------------------------------------------------------------
# The config


def test_export_settings_are_frozen_in_the_plan_and_checked_first(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config["export"].update(switch="long", gguf={"dtype": "bf16"})
    settings = Plan.load(config, ROOT).export
    assert (settings.stage, settings.switch, settings.check_lengths) == ("short", "long", (64, 192))
    assert (settings.gguf.dtype, settings.n_hat) == ("bf16", "zero")
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config["export"].pop("gguf")
    config["export"].pop("switch")
    assert Plan.load(config, ROOT).export.gguf is None and config["export"]["switch"] == "dynamic"  # the defaults

    for edit, message in [
        ({"gguf": {"dtype": "q4_k"}}, "export.gguf.dtype: 'q4_k' is not one of"),
        ({"gguf": {"n_hat": "drop"}}, r"export.gguf: Additional properties are not allowed \('n_hat'"),
        ({"n_hat": "drop"}, "export.n_hat: 'drop' is not one of"),
        ({"switch": "short"}, "export.switch: 'short' is not one of"),
    ]:
        config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
        config["export"].update(edit)
        with pytest.raises(PlanError, match=message):
            Plan.load(config, ROOT)

    qwen = tmp_path / "qwen"
    qwen.mkdir()
    (qwen / "config.json").write_text(json.dumps({"model_type": "qwen2", "num_attention_heads": 2}))
    (qwen / "tokenizer.json").write_text("{}")
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config["base_model"]["path"] = str(qwen)
    config["export"]["gguf"] = {}
    with pytest.raises(PlanError, match="export.gguf writes a Llama-architecture GGUF, but the base model is 'qwen2'"):
        Plan.load(config, ROOT)


def test_llama_cpp_runs_the_gguf_with_transformers_perplexity_beyond_the_switch(exported, tmp_path):
    """llama.cpp itself (llama-cpp-python) on the GGUF: beyond the switch both engines use the long set and agree;
    at 48 tokens transformers takes the short set while llama.cpp, which rounds n_ctx up to 256 before comparing
    with the switch length (64), takes the long one — the difference the switch table of docs/engines.md states."""
    from longrope.export.parity import engine_parity

    write_gguf(exported, tmp_path / "model.gguf", dtype="f32")
    windows = {n: np.random.default_rng(n).integers(0, 256, (3, n)) for n in (INSIDE, BEYOND)}
    rows = engine_parity(exported, tmp_path / "model.gguf", windows, kv_caches=("f32",))
    assert [(row["engine"], row["length"]) for row in rows] == [
        ("longrope", INSIDE), ("llama.cpp f32 KV", INSIDE), ("longrope", BEYOND), ("llama.cpp f32 KV", BEYOND)]
    ours_inside, inside, ours_beyond, beyond = rows
    assert abs(beyond["ppl_rel_diff"]) < 1e-3 and beyond["top1_agreement"] >= 0.99
    assert beyond["ppl_rel_diff_lo"] <= beyond["ppl_rel_diff"] <= beyond["ppl_rel_diff_hi"]
    assert beyond["max_abs_logit_diff"] < 1e-2
    assert inside["max_abs_logit_diff"] > 0.1  # the long set, not transformers' short set
    for ours in (ours_inside, ours_beyond):  # this package's loader picks the set as transformers does
        assert ours["max_abs_logit_diff"] < 1e-4 and ours["top1_agreement"] == 1.0


def test_vllm_prompt_logprobs_read_into_the_parity_row(exported, monkeypatch):
    """vLLM's output as its docs give it (prompt_logprobs: None at t = 0, then {token id: Logprob(logprob, rank)}
    for the prompt's token and the rank-1 token), from a stand-in `vllm` module computing it with stock transformers:
    read at the right positions, it agrees with transformers exactly. No GPU here, so not vLLM itself (docs/engines.md)."""
    import types

    from transformers import AutoModelForCausalLM

    class LLM:
        def __init__(self, model, **settings):
            assert settings["dtype"] == "float32" and "max_model_len" not in settings  # a server's defaults
            self.model = AutoModelForCausalLM.from_pretrained(model, local_files_only=True, dtype=torch.float32)

        def generate(self, prompts, params, use_tqdm):
            assert params.prompt_logprobs == 1
            (prompt,) = prompts
            ids = torch.tensor(prompt["prompt_token_ids"])
            with torch.no_grad():
                logprobs = torch.log_softmax(self.model(ids[None]).logits[0], -1)
            entries = [None]
            for t in range(1, len(ids)):
                row, token = logprobs[t - 1], int(ids[t])
                top = int(row.argmax())
                entries.append({token: types.SimpleNamespace(logprob=float(row[token]),
                                                             rank=int((row > row[token]).sum()) + 1),
                                top: types.SimpleNamespace(logprob=float(row[top]), rank=1)})
            return [types.SimpleNamespace(prompt_logprobs=entries)]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(
        LLM=LLM, SamplingParams=lambda **params: types.SimpleNamespace(**params)))
    from longrope.export.parity import engine_parity

    windows = {BEYOND: np.random.default_rng(0).integers(0, 256, (2, BEYOND))}
    ours, vllm = engine_parity(exported, None, windows, vllm=True)
    assert (ours["engine"], vllm["engine"]) == ("longrope", "vLLM")
    assert abs(vllm["ppl_rel_diff"]) < 1e-6 and vllm["top1_agreement"] == 1.0
    assert np.isnan(vllm["max_abs_logit_diff"])
