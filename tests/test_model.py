import numpy as np
import pytest
import torch

from longrope.data.windows import nested_windows
from longrope.evaluation.perplexity import perplexity, truncated_perplexities
from longrope.model import load_model, next_token_nll, pick_attention
from longrope.patching import RopeNotAppliedError, ScaledRotaryEmbedding, apply_rope_scaling
from longrope.rope import RopeScaling


def logits_at(model, positions):
    ids = torch.arange(len(positions))[None] % 200
    with torch.no_grad():
        mask = torch.ones_like(ids)  # else transformers reads position gaps as packed sequences
        return model(input_ids=ids, position_ids=positions[None], attention_mask=mask, use_cache=False).logits


def test_scaling_changes_the_forward(tiny_model):
    positions = torch.arange(0, 256, 8)
    before = logits_at(tiny_model, positions)
    apply_rope_scaling(tiny_model, RopeScaling("pi", 32, 256))
    assert isinstance(tiny_model.model.rotary_emb, ScaledRotaryEmbedding)
    after = logits_at(tiny_model, positions)
    assert not torch.allclose(before, after)
    assert tiny_model.model.rotary_emb.calls == 1


def test_pi_equals_divided_positions(tiny_model):
    """PI at scale s is exactly plain RoPE at positions / s: checks the patched forward end to end."""
    positions = torch.arange(0, 64, 4)
    plain_at_quarter = logits_at(tiny_model, positions // 4)
    apply_rope_scaling(tiny_model, RopeScaling("pi", 32, 128))
    assert torch.allclose(logits_at(tiny_model, positions), plain_at_quarter, atol=1e-5)


def test_identity_scaling_is_accepted(tiny_model):
    apply_rope_scaling(tiny_model, RopeScaling("none", 32, 32))
    assert tiny_model.model.rotary_emb.calls == 0  # reset after verification


def test_forward_that_never_calls_rotary_is_detected(tiny_model):
    inner = tiny_model.model
    private = inner.rotary_emb
    forward = type(inner).forward

    def forward_with_private_rope(self, *args, **kwargs):  # an architecture with its own per-layer rotary
        swapped, self.rotary_emb = self.rotary_emb, private
        try:
            return forward(self, *args, **kwargs)
        finally:
            self.rotary_emb = swapped

    inner.forward = forward_with_private_rope.__get__(inner)
    with pytest.raises(RopeNotAppliedError, match="never called"):
        apply_rope_scaling(tiny_model, RopeScaling("pi", 32, 256))
    assert inner.rotary_emb is private  # the failed patch is rolled back


def test_rotary_output_ignored_is_detected(tiny_model):
    original = tiny_model.model.rotary_emb
    for layer in tiny_model.model.layers:
        layer_forward = layer.forward

        def ignore_given_rope(hidden_states, *args, layer_forward=layer_forward, **kwargs):
            kwargs["position_embeddings"] = original(hidden_states, kwargs["position_ids"])
            return layer_forward(hidden_states, *args, **kwargs)

        layer.forward = ignore_given_rope
    with pytest.raises(RopeNotAppliedError, match="did not change"):
        apply_rope_scaling(tiny_model, RopeScaling("pi", 32, 256))


def test_wrong_factor_count_fails_before_patching(tiny_model):
    bad = RopeScaling("longrope", 32, 128, factors=(1.0,) * 7)
    with pytest.raises(ValueError, match="8 factors"):
        apply_rope_scaling(tiny_model, bad)
    assert not isinstance(tiny_model.model.rotary_emb, ScaledRotaryEmbedding)


def test_model_without_rotary_is_rejected():
    with pytest.raises(RopeNotAppliedError, match="no model.rotary_emb"):
        apply_rope_scaling(torch.nn.Linear(2, 2), RopeScaling("pi", 32, 64))


def test_missing_model_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path)


def test_save_load_round_trip_keeps_logits(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = load_model(tmp_path)
    positions = torch.arange(16)
    assert torch.equal(logits_at(loaded, positions), logits_at(tiny_model, positions))


def test_attention_kernel_choice():
    assert pick_attention("auto") == ("flash_attention_2" if torch.cuda.is_available() and _has_flash() else "sdpa")
    assert pick_attention("eager") == "eager"
    with pytest.raises(ValueError, match="unknown attention kernel 'flash3'"):
        pick_attention("flash3")


def _has_flash():
    import importlib.util
    return importlib.util.find_spec("flash_attn") is not None


def test_chunked_nll_equals_transformers_loss(tiny_model):
    ids = torch.randint(0, 258, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = tiny_model(input_ids=ids, labels=ids, use_cache=False).loss
        ours = next_token_nll(tiny_model, ids, chunk_size=7)
    assert ours.shape == (2, 39)
    assert torch.allclose(ours.mean(), reference, atol=1e-5)


def test_perplexity_of_uniform_model_is_vocab_size(tiny_model):
    with torch.no_grad():
        tiny_model.model.embed_tokens.weight.zero_()  # tied: zero logits everywhere → uniform prediction
    windows = torch.randint(0, 258, (3, 50)).numpy()
    result = perplexity(tiny_model, windows)
    assert result.ppl == pytest.approx(258, rel=1e-5)
    assert (result.n_samples, result.tokens) == (3, 3 * 49)


@pytest.mark.parametrize("scaling", [
    RopeScaling("yarn", 32, 128),
    RopeScaling("dynamic_ntk", 32, 128),  # a base of its own at every length past 32
    RopeScaling("longrope", 32, 128, factors=[1.0, 1.5, 2, 3, 4, 4, 4, 4],
                short_factors=[1.0, 1, 1, 1, 1, 1, 1.2, 1.4]),  # the short set up to 32 positions
])
def test_nested_windows_score_every_length_as_its_own_forward(tiny_model, scaling):
    tokens = np.random.default_rng(0).integers(0, 258, 2000)
    design = nested_windows(len(tokens), {16: 6, 32: 4, 64: 3, 128: 2}, seed=5)
    apply_rope_scaling(tiny_model, scaling)
    nested, seconds = truncated_perplexities(tiny_model, tokens, design, [16, 32, 64, 128], scaling)
    for n in (16, 32, 64, 128):
        alone = perplexity(tiny_model, np.stack([tokens[s : s + n] for s in design.starts_at(n)]))
        np.testing.assert_allclose(nested[n].unit_nll, alone.unit_nll, rtol=1e-5)
        assert nested[n].tokens == alone.tokens
    assert seconds[128] > 0


def test_a_prefix_under_another_regime_is_not_the_shorter_window(tiny_model):
    """Why truncated_perplexities runs dynamic NTK's lengths apart: the prefix of a longer forward differs."""
    scaling = RopeScaling("dynamic_ntk", 32, 128)
    apply_rope_scaling(tiny_model, scaling)
    ids = torch.randint(0, 258, (1, 128), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        prefix, alone = next_token_nll(tiny_model, ids)[0, :63], next_token_nll(tiny_model, ids[:, :64])[0]
    assert scaling.regime(127) != scaling.regime(63)
    assert not torch.allclose(prefix, alone, rtol=1e-3)


def test_masked_perplexity_is_the_mean_nll_of_the_scored_tokens(tiny_model):
    windows = torch.randint(0, 258, (3, 20), generator=torch.Generator().manual_seed(2)).numpy()
    scored = np.zeros(windows.shape, dtype=bool)
    scored[0, [1, 5, 19]] = scored[1, 10:] = scored[2, [0, 7]] = True  # token 0 is never predicted: not counted
    with torch.no_grad():
        logits = tiny_model(input_ids=torch.as_tensor(windows), use_cache=False).logits
    nll = -logits.log_softmax(-1)[:, :-1].gather(2, torch.as_tensor(windows)[:, 1:, None])[..., 0]  # of token t + 1
    by_hand = [nll[0, [0, 4, 18]].mean(), nll[1, 9:].mean(), nll[2, 6]]
    result = perplexity(tiny_model, windows, scored)
    np.testing.assert_allclose(result.unit_nll, torch.stack(by_hand).numpy(), rtol=1e-5)
    assert result.tokens == 3 + 10 + 1
    everything = perplexity(tiny_model, windows, np.ones(windows.shape, dtype=bool))
    plain = perplexity(tiny_model, windows)
    np.testing.assert_allclose(everything.unit_nll, plain.unit_nll, rtol=1e-6)
    assert everything.tokens == plain.tokens and everything.ppl == pytest.approx(plain.ppl, rel=1e-6)
    scored[2] = False
    scored[2, 0] = True
    with pytest.raises(ValueError, match="needs a scored token after its first"):
        perplexity(tiny_model, windows, scored)
    with pytest.raises(ValueError, match="bool array of the windows' shape"):
        perplexity(tiny_model, windows, scored[:, 1:])


def test_one_scaling_per_row_equals_one_forward_per_scaling(tiny_model):
    """A tuple of scalings gives row b the cos/sin of scaling b: transformers broadcasts them over heads only."""
    scalings = (RopeScaling("pi", 32, 96), RopeScaling("yarn", 32, 128),
                RopeScaling("longrope", 32, 64, factors=tuple(np.linspace(1, 3, 8)), n_hat=5))
    ids = torch.randint(0, 258, (1, 70), generator=torch.Generator().manual_seed(3))
    single = []
    for scaling in scalings:
        apply_rope_scaling(tiny_model, scaling)
        single.append(next_token_nll(tiny_model, ids))
    tiny_model.model.rotary_emb.scaling = scalings
    with torch.no_grad():
        batched = next_token_nll(tiny_model, ids.repeat(3, 1))
    torch.testing.assert_close(batched, torch.cat(single), rtol=0, atol=1e-5)
    assert not torch.allclose(single[0], single[1])  # the rows really differ
    positions = torch.arange(70)
    cos, sin = tiny_model.model.rotary_emb(torch.zeros(()), positions.expand(3, -1))  # one row of positions per row
    assert cos.shape == (3, 70, 16) and torch.equal(sin[2], scalings[2].cos_sin(positions, 16, 500.0)[1])


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "phi3"])
def test_patching_works_for_each_supported_family(family, tmp_path):
    """Every supported transformers-5 family keeps its rotary module at model.model.rotary_emb."""
    import transformers

    config_class, model_class = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "phi3": (transformers.Phi3Config, transformers.Phi3ForCausalLM),
    }[family]
    config = config_class(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32,
                          pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model_class(config).save_pretrained(tmp_path)
    model = load_model(tmp_path)
    with torch.no_grad():
        for layer in model.model.layers:  # sharpen attention so positions show in the logits
            for proj in ("q_proj", "k_proj", "qkv_proj"):
                if hasattr(layer.self_attn, proj):
                    getattr(layer.self_attn, proj).weight.mul_(30)
    apply_rope_scaling(model, RopeScaling("yarn", 32, 256))
    assert isinstance(model.model.rotary_emb, ScaledRotaryEmbedding)


def test_repatching_a_scaled_model(tiny_model):
    """A second scaling that differs from the first only where the probe does not look is still accepted."""
    apply_rope_scaling(tiny_model, RopeScaling("pi", 32, 64))
    apply_rope_scaling(tiny_model, RopeScaling("pi", 32, 64, n_hat=4))
    assert tiny_model.model.rotary_emb.scaling.n_hat == 4


LONG = [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 8.0]
SHORT = [1.0, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.5]


def test_export_loads_in_stock_transformers_with_our_logits(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from longrope.model import save_extended

    scaling = RopeScaling("longrope", 32, 256, factors=LONG, short_factors=SHORT, short_length=64)
    apply_rope_scaling(tiny_model, scaling)
    save_extended(tiny_model, scaling, tmp_path)
    stock = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True).eval()
    ours_loaded = load_model(tmp_path)  # applies longrope_scaling.json
    assert stock.config.max_position_embeddings == 256
    long_only = apply_rope_scaling(load_model(tmp_path), RopeScaling("longrope", 32, 256, factors=LONG))
    for length in (64, 200):  # at the switch length (short set) and past it (long set)
        ids = torch.randint(0, 258, (1, length), generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            expected = tiny_model(ids).logits
            assert torch.equal(stock(ids).logits, expected)
            assert torch.equal(ours_loaded(ids).logits, expected)
            # the short set is really in use up to the switch length, not the long one
            assert torch.equal(long_only(ids).logits, expected) == (length > 64)


def test_export_keeps_n_hat_for_our_loader_only(tiny_model, tmp_path):
    from longrope.model import save_extended

    scaling = RopeScaling("longrope", 32, 256, factors=LONG, n_hat=4)
    save_extended(apply_rope_scaling(tiny_model, scaling), scaling, tmp_path)
    assert load_model(tmp_path).model.rotary_emb.scaling == scaling
    with pytest.raises(ValueError, match="only LongRoPE scalings are exported, not 'pi'"):
        save_extended(tiny_model, RopeScaling("pi", 32, 256), tmp_path)
