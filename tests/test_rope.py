"""longrope.rope: transformers 5.x parity, spot values from longrope-method.md §1 and §8, n_hat, validation."""

import json
import math

import pytest
import torch
from transformers import LlamaConfig, Phi3Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from longrope.rope import (METHODS, RopeScaling, critical_dimension, equivalent_factors, mixed_window_scaling, yarn_ramp, yarn_range)

# Phi-3-mini-128k-instruct, longrope-method.md §8.1: v2 = June 2024 "longrope" config, v1 = April 2024 "su" config
PHI3_LONG_V2 = [
    1.0700000524520874, 1.1200000047683716, 1.149999976158142, 1.4199999570846558, 1.5699999332427979, 1.7999999523162842,
    2.129999876022339, 2.129999876022339, 3.009999990463257, 5.910000324249268, 6.950000286102295, 9.070000648498535,
    9.930000305175781, 10.710000038146973, 11.130000114440918, 14.609999656677246, 15.409998893737793, 19.809999465942383,
    37.279998779296875, 38.279998779296875, 38.599998474121094, 40.12000274658203, 46.20000457763672, 50.940006256103516,
    53.66000747680664, 54.9373893737793, 56.89738845825195, 57.28738784790039, 59.98738479614258, 60.86738586425781,
    60.887386322021484, 61.71739196777344, 62.91739273071289, 62.957393646240234, 63.41739273071289, 63.8173942565918,
    63.83739471435547, 63.897396087646484, 63.93739700317383, 64.06739807128906, 64.11434936523438, 64.12435150146484,
    64.15435028076172, 64.19435119628906, 64.24435424804688, 64.57435607910156, 64.69000244140625, 64.76000213623047,
]  # fmt: skip
PHI3_SHORT_V2 = (
    [1.1, 1.1, 1.1, 1.3000000000000003, 1.3500000000000003, 1.3500000000000003, 1.4000000000000004, 1.5500000000000005]
    + [2.000000000000001] * 17
    + [2.0500000000000007] * 6
    + [2.1000000000000005] * 2
    + [2.1500000000000004] + [2.25] * 5
    + [2.3999999999999995, 2.4499999999999993, 2.499999999999999, 2.6999999999999984, 2.6999999999999984]
    + [2.7499999999999982, 2.799999999999998, 2.8999999999999977, 3.049999999999997]
)
PHI3_LONG_V1 = [
    1.0299999713897705, 1.0499999523162842, 1.0499999523162842, 1.0799999237060547, 1.2299998998641968, 1.2299998998641968,
    1.2999999523162842, 1.4499999284744263, 1.5999999046325684, 1.6499998569488525, 1.8999998569488525, 2.859999895095825,
    3.68999981880188, 5.419999599456787, 5.489999771118164, 5.489999771118164, 9.09000015258789, 11.579999923706055,
    15.65999984741211, 15.769999504089355, 15.789999961853027, 18.360000610351562, 21.989999771118164, 23.079999923706055,
    30.009998321533203, 32.35000228881836, 32.590003967285156, 35.56000518798828, 39.95000457763672, 53.840003967285156,
    56.20000457763672, 57.95000457763672, 59.29000473022461, 59.77000427246094, 59.920005798339844, 61.190006256103516,
    61.96000671386719, 62.50000762939453, 63.3700065612793, 63.48000717163086, 63.48000717163086, 63.66000747680664,
    63.850006103515625, 64.08000946044922, 64.760009765625, 64.80001068115234, 64.81001281738281, 64.81001281738281,
]  # fmt: skip
PHI3_SHORT_V1 = (
    [1.05] * 3 + [1.1] * 3 + [1.2500000000000002] * 2
    + [1.4000000000000004, 1.4500000000000004, 1.5500000000000005, 1.8500000000000008, 1.9000000000000008]
    + [2.000000000000001] * 19
    + [2.1000000000000005] * 2 + [2.2] + [2.3499999999999996] * 4 + [2.3999999999999995] * 2
    + [2.6499999999999986, 2.6999999999999984, 2.8999999999999977, 2.9499999999999975] + [3.049999999999997] * 3
)
PHI3_ATTENTION = 1.1902380714  # sqrt(1 + ln 32 / ln 4096)

LLAMA2 = dict(head_dim=128, base=1e4, L0=4096)
TOL = dict(rtol=1e-6, atol=0)


def hf_inv_freq(rope_type, head_dim, base, max_len, seq_len=None, **params):
    """transformers' (inv_freq, attention_factor) for a Llama config with these rope_parameters."""
    config = LlamaConfig(
        hidden_size=head_dim * 2,
        num_attention_heads=2,
        head_dim=head_dim,
        max_position_embeddings=max_len,
        rope_parameters={"rope_type": rope_type, "rope_theta": base, **params},
    )
    return ROPE_INIT_FUNCTIONS[rope_type](config, "cpu", seq_len=seq_len)


def test_sizes_of_the_phi3_lists():
    for factors in (PHI3_LONG_V2, PHI3_SHORT_V2, PHI3_LONG_V1, PHI3_SHORT_V1):
        assert len(factors) == 48


def test_none_is_plain_rope():
    inv = RopeScaling().inv_freq(128, 1e4)
    assert inv.dtype == torch.float32 and inv.shape == (64,)
    torch.testing.assert_close(inv, 1e4 ** -(torch.arange(64, dtype=torch.float64) / 64), **TOL, check_dtype=False)


@pytest.mark.parametrize("factor", [1, 2, 8])
def test_pi_matches_hf_linear(factor):
    inv, attention = hf_inv_freq("linear", 128, 1e4, 4096, factor=float(factor))
    sc = RopeScaling("pi", 4096, 4096 * factor)
    torch.testing.assert_close(sc.inv_freq(128, 1e4), inv, **TOL)
    assert sc.attention_scale == attention == 1.0


@pytest.mark.parametrize("seq_len", [None, 100, 4096, 5000, 16384, 65536])
def test_dynamic_ntk_matches_hf_dynamic(seq_len):
    inv, attention = hf_inv_freq("dynamic", 128, 1e4, 4096, seq_len=seq_len, factor=4.0)
    sc = RopeScaling("dynamic_ntk", 4096, 16384)
    torch.testing.assert_close(sc.inv_freq(128, 1e4, seq_len), inv, **TOL)
    assert sc.attention_scale == attention == 1.0


def test_dynamic_ntk_spot_values():
    # b' = 1e4 * 13**(128/126) = 135401.97 at s = 4, seq 16384
    inv = RopeScaling("dynamic_ntk", 4096, 16384).inv_freq(128, 1e4, seq_len=16384)
    assert inv[1].item() == pytest.approx(0.831416, rel=1e-6)
    assert inv[63].item() == pytest.approx(8.88294e-6, rel=1e-5)
    assert inv[1].item() == pytest.approx(135401.97 ** (-2 / 128), rel=1e-6)


def test_static_ntk_is_dynamic_ntk_where_the_base_multiplier_equals_s():
    # HF's dynamic base multiplier s*seq/L0 - (s - 1) equals s at seq = L0 (2s - 1)/s: 6144 for s = 2
    inv, _ = hf_inv_freq("dynamic", 128, 1e4, 4096, seq_len=6144, factor=2.0)
    torch.testing.assert_close(RopeScaling("ntk", 4096, 8192).inv_freq(128, 1e4), inv, **TOL)


@pytest.mark.parametrize(
    "head_dim, base, L0, beta_fast, beta_slow, expected",
    [
        (128, 1e4, 4096, 32, 1, (20, 46)),  # LLaMA2
        (128, 1e4, 4096, 128, 2, (11, 41)),  # Mistral
        (128, 5e5, 8192, 32, 1, (18, 35)),  # Llama-3
        (96, 1e4, 4096, 32, 1, (15, 34)),  # Phi-3
    ],
)
def test_yarn_range_and_parity(head_dim, base, L0, beta_fast, beta_slow, expected):
    assert yarn_range(head_dim, base, L0, beta_fast, beta_slow) == expected
    ramp = yarn_ramp(head_dim, base, L0, beta_fast, beta_slow)
    low, high = expected
    assert ramp[low] == 0 < ramp[low + 1] and ramp[high - 1] < 1 == ramp[high]
    assert ramp.min() == 0 and ramp.max() == 1 and bool((ramp.diff() >= 0).all())

    inv, attention = hf_inv_freq(
        "yarn", head_dim, base, 8 * L0, factor=8.0, original_max_position_embeddings=L0,
        beta_fast=beta_fast, beta_slow=beta_slow,
    )  # fmt: skip
    sc = RopeScaling("yarn", L0, 8 * L0, beta_fast=beta_fast, beta_slow=beta_slow)
    torch.testing.assert_close(sc.inv_freq(head_dim, base), inv, **TOL)
    assert sc.attention_scale == pytest.approx(attention, rel=1e-12)


def test_yarn_spot_values_llama2():
    sc = RopeScaling("yarn", 4096, 32768)
    inv = sc.inv_freq(128, 1e4)
    expected = {20: 5.623413e-2, 21: 4.705792e-2, 33: 4.871049e-3, 46: 1.666902e-4, 63: 1.443477e-5}
    for j, value in expected.items():
        assert inv[j].item() == pytest.approx(value, rel=2e-6), j
    assert sc.attention_scale == pytest.approx(1.207944, abs=1e-6)


@pytest.mark.parametrize(
    "s, mscale",
    [(2, 1.040833), (4, 1.080123), (8, 1.118034), (16, 1.154701), (32, 1.190238), (64, 1.224745),
     (128, 1.258306), (512, 1.322876)],
)  # fmt: skip
def test_longrope_attention_scale_table(s, mscale):
    sc = RopeScaling("longrope", 4096, 4096 * s, factors=[1.0] * 64)
    assert sc.attention_scale == pytest.approx(mscale, abs=1e-6)


def test_attention_scale_rules():
    assert RopeScaling("longrope", 4096, 4096, factors=[1.0] * 4).attention_scale == 1.0
    assert RopeScaling("yarn", 4096, 4096).attention_scale == 1.0
    for method in ("none", "pi", "ntk", "dynamic_ntk"):
        assert RopeScaling(method, 4096, 32768).attention_scale == 1.0
    assert RopeScaling("pi", 4096, 32768, attention_factor=1.3).attention_scale == 1.3


@pytest.mark.parametrize("long, short", [(PHI3_LONG_V2, PHI3_SHORT_V2), (PHI3_LONG_V1, PHI3_SHORT_V1)])
def test_longrope_matches_hf_phi3(long, short):
    config = Phi3Config(
        hidden_size=3072,
        num_attention_heads=32,
        max_position_embeddings=131072,
        original_max_position_embeddings=4096,
        rope_parameters={"rope_type": "longrope", "rope_theta": 1e4, "long_factor": long, "short_factor": short},
    )
    hf_long, attention_long = ROPE_INIT_FUNCTIONS["longrope"](config, "cpu", seq_len=4097)
    hf_short, attention_short = ROPE_INIT_FUNCTIONS["longrope"](config, "cpu")
    ours_long = RopeScaling("longrope", 4096, 131072, factors=long)
    ours_short = RopeScaling("longrope", 4096, 131072, factors=short)
    torch.testing.assert_close(ours_long.inv_freq(96, 1e4), hf_long, **TOL)
    torch.testing.assert_close(ours_short.inv_freq(96, 1e4), hf_short, **TOL)
    assert ours_long.attention_scale == pytest.approx(attention_long, rel=1e-12)
    assert ours_short.attention_scale == pytest.approx(attention_short, rel=1e-12)
    assert ours_long.attention_scale == pytest.approx(PHI3_ATTENTION, abs=1e-10)


def test_phi3_spot_values():
    long = RopeScaling("longrope", 4096, 131072, factors=PHI3_LONG_V2).inv_freq(96, 1e4)
    short = RopeScaling("longrope", 4096, 131072, factors=PHI3_SHORT_V2).inv_freq(96, 1e4)
    for j, value in zip([0, 1, 23, 47], [0.93457937, 0.73696804, 2.3783425e-4, 1.8707960e-6]):
        assert long[j].item() == pytest.approx(value, rel=1e-6), j
    for j, value in zip([0, 1, 23, 47], [0.90909088, 0.75036746, 6.0576391e-3, 3.9722214e-5]):
        assert short[j].item() == pytest.approx(value, rel=1e-6), j


# tiny model: head_dim 16, L0 64, s = 4; positions run past L0 so dynamic and longrope take their long branch
LONG_8 = [1.0, 1.0, 1.5, 2.0, 3.0, 3.5, 4.0, 4.5]
SHORT_8 = [1.0, 1.0, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
HF_CASES = {
    "pi": ({"rope_type": "linear", "factor": 4.0}, 64, RopeScaling("pi", 64, 256)),
    "dynamic_ntk": ({"rope_type": "dynamic", "factor": 4.0}, 64, RopeScaling("dynamic_ntk", 64, 256)),
    "yarn": (
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
        256,
        RopeScaling("yarn", 64, 256),
    ),
    "longrope": (
        {"rope_type": "longrope", "long_factor": LONG_8, "short_factor": SHORT_8,
         "original_max_position_embeddings": 64},
        256,
        RopeScaling("longrope", 64, 256, factors=LONG_8),
    ),
}


@pytest.mark.parametrize("case", list(HF_CASES))
def test_cos_sin_matches_llama_rotary_embedding(case):
    params, max_len, ours = HF_CASES[case]
    config = LlamaConfig(
        hidden_size=64,
        num_attention_heads=4,
        max_position_embeddings=max_len,
        rope_parameters={"rope_theta": 1e4, **params},
    )
    position_ids = torch.arange(200)[None].repeat(2, 1)
    hf_cos, hf_sin = LlamaRotaryEmbedding(config)(torch.zeros(2, 200, 16), position_ids)
    cos, sin = ours.cos_sin(position_ids, 16, 1e4)
    assert cos.shape == sin.shape == (2, 200, 16) and cos.dtype == torch.float32
    torch.testing.assert_close(cos, hf_cos, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sin, hf_sin, rtol=1e-6, atol=1e-6)


def test_longrope_short_positions_match_hf_with_the_short_factors():
    # below L0 transformers switches to short_factor but keeps the long-context attention factor
    params, max_len, _ = HF_CASES["longrope"]
    config = LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=max_len,
                         rope_parameters={"rope_theta": 1e4, **params})  # fmt: skip
    position_ids = torch.arange(50)[None]
    hf_cos, hf_sin = LlamaRotaryEmbedding(config)(torch.zeros(1, 50, 16), position_ids)
    cos, sin = RopeScaling("longrope", 64, 256, factors=SHORT_8).cos_sin(position_ids, 16, 1e4)
    torch.testing.assert_close(cos, hf_cos, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sin, hf_sin, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("short_length, n", [(None, 64), (None, 65), (128, 128), (128, 129), (128, 40)])
def test_two_factor_sets_switch_like_llama_rotary_embedding(short_length, n):
    # one scaling that carries both sets: the short one up to short_length positions (default L0), as transformers
    # does up to original_max_position_embeddings when factor and attention_factor are given explicitly
    ours = RopeScaling("longrope", 64, 256, factors=LONG_8, short_factors=SHORT_8, short_length=short_length)
    config = LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=256, rope_parameters={
        "rope_theta": 1e4, "rope_type": "longrope", "long_factor": LONG_8, "short_factor": SHORT_8, "factor": 4.0,
        "attention_factor": ours.attention_scale, "original_max_position_embeddings": ours.switch_length})
    position_ids = torch.arange(n)[None]
    hf_cos, hf_sin = LlamaRotaryEmbedding(config)(torch.zeros(1, n, 16), position_ids)
    cos, sin = ours.cos_sin(position_ids, 16, 1e4)
    torch.testing.assert_close(cos, hf_cos, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(sin, hf_sin, rtol=1e-6, atol=1e-6)
    used = SHORT_8 if n <= ours.switch_length else LONG_8
    expected = RopeScaling("longrope", 64, 256, factors=used).cos_sin(position_ids, 16, 1e4)
    torch.testing.assert_close((cos, sin), expected, rtol=0, atol=0)


def test_two_factor_sets_round_trip_and_validation():
    both = RopeScaling("longrope", 64, 256, factors=LONG_8, short_factors=SHORT_8, short_length=128)
    assert RopeScaling.from_dict(json.loads(json.dumps(both.to_dict()))) == both
    assert torch.equal(both.inv_freq(16, 1e4), both.inv_freq(16, 1e4, seq_len=128))  # no length given: short set
    with pytest.raises(ValueError, match="short_length is only used together with short_factors"):
        RopeScaling("longrope", 64, 256, factors=LONG_8, short_length=128)
    with pytest.raises(ValueError, match="short_length 512 must lie between the original length 64 and the target"):
        RopeScaling("longrope", 64, 256, factors=LONG_8, short_factors=SHORT_8, short_length=512)
    with pytest.raises(ValueError, match="short_factors must be non-decreasing; factor 2"):
        RopeScaling("longrope", 64, 256, factors=LONG_8, short_factors=[1.0, 1.2, 1.1] + [2.0] * 5)
    with pytest.raises(ValueError, match="short_factors are only used by method 'longrope'"):
        RopeScaling("pi", 64, 256, short_factors=SHORT_8)
    with pytest.raises(ValueError, match="expected 8 short_factors for head_dim 16, got 4"):
        RopeScaling("longrope", 64, 256, factors=LONG_8, short_factors=[1.0] * 4).inv_freq(16, 1e4)


def test_mixed_window_scaling_keeps_the_original_rope_within_l0():
    long = RopeScaling("longrope", 64, 256, factors=LONG_8, n_hat=4)
    mixed = mixed_window_scaling(long)
    assert mixed.short_factors == (1.0,) * 8 and mixed.switch_length == 64 and mixed.n_hat == 4
    plain = torch.arange(64)  # within L0: original frequencies, with the long set's attention factor (Phi-3)
    rope = RopeScaling("none", 64, 64).cos_sin(plain, 16, 1e4)
    torch.testing.assert_close(mixed.cos_sin(plain, 16, 1e4)[0][4:], rope[0][4:] * long.attention_scale)
    beyond = torch.arange(65)  # past L0: exactly the searched scaling
    torch.testing.assert_close(mixed.cos_sin(beyond, 16, 1e4), long.cos_sin(beyond, 16, 1e4), rtol=0, atol=0)
    with pytest.raises(ValueError, match="adds a short factor set of ones to LongRoPE factors without one"):
        mixed_window_scaling(mixed)
    with pytest.raises(ValueError, match="not to 'pi'"):
        mixed_window_scaling(RopeScaling("pi", 64, 256))


SCALED = {m: RopeScaling(m, 64, 256, factors=LONG_8 if m == "longrope" else None) for m in METHODS if m != "none"}


@pytest.mark.parametrize("method", list(SCALED))
@pytest.mark.parametrize("k", [1, 4, 32])
def test_n_hat_keeps_original_rope_for_start_positions(method, k):
    positions = torch.arange(200)
    sc = RopeScaling(**{**SCALED[method].to_dict(), "n_hat": k})
    cos, sin = sc.cos_sin(positions, 16, 1e4)
    cos0, sin0 = RopeScaling().cos_sin(positions, 16, 1e4)
    assert torch.equal(cos[:k], cos0[:k]) and torch.equal(sin[:k], sin0[:k])
    assert not torch.equal(cos[k], cos0[k])
    scaled_cos, scaled_sin = SCALED[method].cos_sin(positions, 16, 1e4)
    assert torch.equal(cos[k:], scaled_cos[k:]) and torch.equal(sin[k:], scaled_sin[k:])


def test_n_hat_follows_position_values_not_rows():
    sc = RopeScaling("pi", 64, 256, n_hat=4)
    positions = torch.stack([torch.arange(100), torch.arange(10, 110)])
    cos, _ = sc.cos_sin(positions, 16, 1e4)
    cos0, _ = RopeScaling().cos_sin(positions, 16, 1e4)
    scaled, _ = RopeScaling("pi", 64, 256).cos_sin(positions, 16, 1e4)
    assert torch.equal(cos[0, :4], cos0[0, :4]) and torch.equal(cos[1], scaled[1])


def test_n_hat_zero_overwrites_nothing():
    sc = SCALED["longrope"]
    positions = torch.arange(100)
    cos, sin = sc.cos_sin(positions, 16, 1e4)
    freqs = positions[:, None].float() * sc.inv_freq(16, 1e4)
    emb = torch.cat((freqs, freqs), dim=-1)
    assert torch.equal(cos, emb.cos() * sc.attention_scale) and torch.equal(sin, emb.sin() * sc.attention_scale)
    assert cos[0, 0].item() == pytest.approx(sc.attention_scale) != 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="alibi"), r"unknown RoPE method 'alibi'.*none, pi, ntk, dynamic_ntk, yarn, longrope"),
        (dict(original_length=0), "original length must be positive"),
        (dict(original_length=4096, target_length=2048), "target length 2048 is below the original length 4096"),
        (dict(method="pi", target_length=8192, factors=[1.0, 2.0]), "only used by method 'longrope', not 'pi'"),
        (dict(method="longrope", target_length=8192), "'longrope' needs factors"),
        (dict(method="longrope", target_length=8192, factors=[1.0, 0.0]), "finite and positive; factor 1 is 0.0"),
        (dict(method="longrope", target_length=8192, factors=[-1.0, 1.0]), "factor 0 is -1.0"),
        (dict(method="longrope", target_length=8192, factors=[1.0, math.inf]), "factor 1 is inf"),
        (dict(method="longrope", target_length=8192, factors=[1.0, math.nan]), "factor 1 is nan"),
        (dict(method="longrope", target_length=8192, factors=[1, 2, 1.5, 3]),
         "non-decreasing; factor 2 = 1.5 < factor 1 = 2.0"),
        (dict(n_hat=-1), "n_hat must be >= 0, got -1"),
        (dict(attention_factor=0.0), "attention factor must be positive, got 0.0"),
        (dict(attention_factor=-1.0), "attention factor must be positive"),
    ],
)  # fmt: skip
def test_validation_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RopeScaling(**kwargs)


def test_factor_count_and_head_dim_are_checked():
    sc = RopeScaling("longrope", 4096, 8192, factors=[1.0] * 47)
    with pytest.raises(ValueError, match="expected 48 factors for head_dim 96, got 47"):
        sc.inv_freq(96, 1e4)
    with pytest.raises(ValueError, match="head_dim must be a positive even number, got 15"):
        RopeScaling().inv_freq(15, 1e4)


def test_dict_round_trip_and_unknown_keys():
    sc = RopeScaling("longrope", 4096, 131072, factors=PHI3_LONG_V2, n_hat=4, attention_factor=1.1)
    assert isinstance(sc.factors, tuple) and hash(sc)
    d = json.loads(json.dumps(sc.to_dict()))
    assert RopeScaling.from_dict(d) == sc
    assert RopeScaling.from_dict(RopeScaling("yarn", 4096, 8192).to_dict()) == RopeScaling("yarn", 4096, 8192)
    with pytest.raises(ValueError, match="unknown RopeScaling keys: factor, rope_type"):
        RopeScaling.from_dict({"method": "pi", "rope_type": "linear", "factor": 2.0})


def test_equivalent_factors():
    pi = equivalent_factors(RopeScaling("pi", 4096, 32768), 128, 1e4)
    torch.testing.assert_close(pi, torch.full((64,), 8.0), **TOL)
    lr = equivalent_factors(RopeScaling("longrope", 4096, 131072, factors=PHI3_LONG_V2), 96, 1e4)
    torch.testing.assert_close(lr, torch.tensor(PHI3_LONG_V2), **TOL)
    # YaRN blends inverse frequencies: λ_j = 1 / ((1 - r_j) + r_j / s); §1.4 spot values for LLaMA2, s = 8
    yarn = equivalent_factors(RopeScaling("yarn", 4096, 32768), 128, 1e4)
    ramp = yarn_ramp(128, 1e4, 4096)
    torch.testing.assert_close(yarn, 1 / ((1 - ramp) + ramp / 8), rtol=1e-5, atol=0)
    for j, value in {21: 1.0348, 33: 1.7778, 45: 6.3030}.items():
        assert yarn[j].item() == pytest.approx(value, abs=1e-4), j
    ntk = equivalent_factors(RopeScaling("ntk", 4096, 16384), 128, 1e4)
    assert ntk[0].item() == pytest.approx(1.0) and ntk[-1].item() == pytest.approx(4.0, rel=1e-5)
    assert bool((ntk.diff() > 0).all())


@pytest.mark.parametrize("head_dim, base, original_length, expected", [
    (128, 500_000.0, 8192, 70),  # LLaMA3-8B, LongRoPE2's example
    (64, 500.0, 128, 32),        # the embedded default's tiny model
    (64, 100_000.0, 8192, 40),   # SmolLM2-135M
])
def test_critical_dimension_is_the_first_pair_that_never_turns_within_L0(head_dim, base, original_length, expected):
    d_tcd = critical_dimension(head_dim, base, original_length)
    assert d_tcd == expected
    period = 2 * math.pi * base ** (torch.arange(0, head_dim, 2) / head_dim)  # positions per turn of each pair
    assert period[d_tcd // 2] >= original_length > period[d_tcd // 2 - 1]
