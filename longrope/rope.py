"""Rotary position embeddings and the context-extension rules LongRoPE is compared with.

Each method maps (head_dim, base) to inverse frequencies the way transformers' ROPE_INIT_FUNCTIONS do, and the
float32 numbers agree with transformers 5.x. LongRoPE (Ding et al., 2024) divides the frequency of rotary pair i by
its own factor λ_i (non-decreasing in i) and keeps the original RoPE for the first n_hat positions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Callable

import torch


def _exponents(head_dim: int) -> torch.Tensor:
    # int64 arange cast to float, as transformers does, so float32 results agree bit for bit
    return torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim


def _rope(head_dim: int, base: float) -> torch.Tensor:
    return 1.0 / (base ** _exponents(head_dim))


def yarn_range(head_dim: int, base: float, original_length: int, beta_fast: float, beta_slow: float) -> tuple[int, int]:
    """YaRN's correction range (low, high): the pairs between which the interpolation ramp rises from 0 to 1."""

    def pair_with(rotations: float) -> float:  # pair index that turns `rotations` times over original_length
        return head_dim * math.log(original_length / (2 * math.pi * rotations)) / (2 * math.log(base))

    return max(math.floor(pair_with(beta_fast)), 0), min(math.ceil(pair_with(beta_slow)), head_dim - 1)


def critical_dimension(head_dim: int, base: float, original_length: int) -> int:
    """LongRoPE2's theoretical critical dimension d_tcd = 2⌈(d/2)·log_θ(L0 / 2π)⌉ (Shang et al., 2025): rotary dims
    from d_tcd up (pairs from d_tcd / 2 up) turn less than once over L0, so pretraining never saw their full period."""
    return 2 * math.ceil(head_dim / 2 * math.log(original_length / (2 * math.pi)) / math.log(base))


def yarn_ramp(
    head_dim: int, base: float, original_length: int, beta_fast: float = 32.0, beta_slow: float = 1.0
) -> torch.Tensor:
    """Per-pair weight r_j in [0, 1] of interpolation: 0 keeps the original frequency, 1 divides it by s (PI)."""
    low, high = yarn_range(head_dim, base, original_length, beta_fast, beta_slow)
    if low == high:
        high += 0.001  # as transformers, to avoid 0/0
    return ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)


def _none(sc: RopeScaling, head_dim: int, base: float, seq_len: int | None) -> torch.Tensor:
    return _rope(head_dim, base)


def _pi(sc: RopeScaling, head_dim: int, base: float, seq_len: int | None) -> torch.Tensor:
    return _rope(head_dim, base) / sc.scale


def _ntk(sc: RopeScaling, head_dim: int, base: float, seq_len: int | None) -> torch.Tensor:
    return _rope(head_dim, base * sc.scale ** (head_dim / (head_dim - 2)))


def _dynamic_ntk(sc: RopeScaling, head_dim: int, base: float, seq_len: int | None) -> torch.Tensor:
    L0, s, seq = sc.original_length, sc.scale, sc.regime(seq_len)  # the length the base is scaled for
    return _rope(head_dim, base * (s * seq / L0 - (s - 1)) ** (head_dim / (head_dim - 2)))


def _yarn(sc: RopeScaling, head_dim: int, base: float, seq_len: int | None) -> torch.Tensor:
    wavelength = base ** _exponents(head_dim)
    keep = 1 - yarn_ramp(head_dim, base, sc.original_length, sc.beta_fast, sc.beta_slow)
    # the same expression as transformers (blend of inverse frequencies), so the results match exactly
    return 1.0 / (sc.scale * wavelength) * (1 - keep) + 1.0 / wavelength * keep


def _longrope(sc: RopeScaling, head_dim: int, base: float, seq_len: int | None) -> torch.Tensor:
    for name in ("factors", "short_factors"):
        if getattr(sc, name) is not None and len(getattr(sc, name)) != head_dim // 2:
            raise ValueError(f"expected {head_dim // 2} {name} for head_dim {head_dim}, got {len(getattr(sc, name))}")
    factors = sc.short_factors if sc.regime(seq_len) else sc.factors  # Phi-3's switch (RopeScaling.regime)
    # λ multiplies the wavelength: λ = 1 extrapolates, λ = s interpolates like PI
    return 1.0 / (torch.tensor(factors, dtype=torch.float32) * base ** _exponents(head_dim))


INV_FREQ: dict[str, Callable[[RopeScaling, int, float, int | None], torch.Tensor]] = {
    "none": _none,
    "pi": _pi,
    "ntk": _ntk,
    "dynamic_ntk": _dynamic_ntk,
    "yarn": _yarn,
    "longrope": _longrope,
}
METHODS: tuple[str, ...] = tuple(INV_FREQ)


def _cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    freqs = positions[..., None].float() * inv_freq.to(positions.device)
    emb = torch.cat((freqs, freqs), dim=-1)  # rotate-half layout: pair i sits at i and i + head_dim/2
    return emb.cos() * scale, emb.sin() * scale


def _checked_factors(name: str, values) -> tuple[float, ...]:
    factors = tuple(float(x) for x in values)  # lists become tuples so instances stay hashable
    for i, x in enumerate(factors):
        if not (math.isfinite(x) and x > 0):
            raise ValueError(f"{name} must be finite and positive; factor {i} is {x}")
    for i in range(1, len(factors)):
        if factors[i] < factors[i - 1]:
            raise ValueError(f"{name} must be non-decreasing; factor {i} = {factors[i]} < "
                             f"factor {i - 1} = {factors[i - 1]}")
    return factors


@dataclass(frozen=True)
class RopeScaling:
    """How RoPE is stretched from original_length to target_length (scale s = target_length / original_length).

    LongRoPE may carry a second factor set, short_factors (the paper's short-context recovery), used for sequences
    of at most short_length positions (default original_length), with the same attention factor — Phi-3's rule.
    """

    method: str = "none"
    original_length: int = 4096
    target_length: int = 4096
    factors: tuple[float, ...] | None = None
    n_hat: int = 0
    attention_factor: float | None = None
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    short_factors: tuple[float, ...] | None = None
    short_length: int | None = None

    def __post_init__(self):
        if self.method not in INV_FREQ:
            raise ValueError(f"unknown RoPE method {self.method!r}; valid methods: {', '.join(METHODS)}")
        if self.original_length <= 0:
            raise ValueError(f"original length must be positive, got {self.original_length}")
        if self.target_length < self.original_length:
            raise ValueError(
                f"target length {self.target_length} is below the original length {self.original_length}"
            )
        if self.factors is None and self.method == "longrope":
            raise ValueError("method 'longrope' needs factors (one λ per frequency pair)")
        for name in ("factors", "short_factors"):
            if getattr(self, name) is not None:
                if self.method != "longrope":
                    raise ValueError(f"{name} are only used by method 'longrope', not {self.method!r}")
                object.__setattr__(self, name, _checked_factors(name, getattr(self, name)))
        if self.short_length is not None:
            if self.short_factors is None:
                raise ValueError("short_length is only used together with short_factors")
            if not self.original_length <= self.short_length <= self.target_length:
                raise ValueError(f"short_length {self.short_length} must lie between the original length "
                                 f"{self.original_length} and the target length {self.target_length}")
        if self.n_hat < 0:
            raise ValueError(f"n_hat must be >= 0, got {self.n_hat}")
        if self.attention_factor is not None and not self.attention_factor > 0:
            raise ValueError(f"attention factor must be positive, got {self.attention_factor}")

    @property
    def switch_length(self) -> int:
        """Longest sequence that uses short_factors (when there are any)."""
        return self.short_length or self.original_length

    @property
    def scale(self) -> float:
        return self.target_length / self.original_length

    @property
    def attention_scale(self) -> float:
        """Multiplier of cos and sin (q·k logits get its square): attention_factor, else the method's rule."""
        if self.attention_factor is not None:
            return self.attention_factor
        s = self.scale
        if s <= 1:
            return 1.0
        if self.method == "longrope":
            return math.sqrt(1 + math.log(s) / math.log(self.original_length))
        if self.method == "yarn":
            return 0.1 * math.log(s) + 1
        return 1.0

    def inv_freq(self, head_dim: int, base: float, seq_len: int | None = None) -> torch.Tensor:
        """Inverse frequency per rotary pair, float32, head_dim // 2 values; seq_len matters for dynamic_ntk only."""
        if head_dim <= 0 or head_dim % 2:
            raise ValueError(f"head_dim must be a positive even number, got {head_dim}")
        return INV_FREQ[self.method](self, head_dim, base, seq_len)

    def regime(self, seq_len: int | None) -> object:
        """What of a sequence's length the rotation depends on: dynamic NTK's base follows the length past
        original_length (returned: that length); a short factor set is used up to switch_length positions or when
        no length is given (returned: whether it is), Phi-3's switch as in transformers; otherwise nothing (None).
        Equal for two lengths, every position gets the same rotation under both, so a causal model scores a
        sequence's prefix exactly as it scores the prefix alone."""
        if self.method == "dynamic_ntk":
            return max(seq_len or self.original_length, self.original_length)
        if self.short_factors is not None:
            return seq_len is None or seq_len <= self.switch_length
        return None

    def cos_sin(self, positions: torch.Tensor, head_dim: int, base: float,
                seq_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape positions.shape + (head_dim,): rotate-half layout, attention scale and n_hat applied.
        `seq_len` (default: the largest position + 1) picks the factor set and dynamic scalings' frequencies."""
        if seq_len is None and positions.numel():
            seq_len = int(positions.max()) + 1
        cos, sin = _cos_sin(positions, self.inv_freq(head_dim, base, seq_len), self.attention_scale)
        if self.n_hat > 0:
            # overwrite, as the official MixedLongRoPE does: the original RoPE, without attention scale
            start = (positions < self.n_hat)[..., None]
            cos0, sin0 = _cos_sin(positions, _rope(head_dim, base), 1.0)
            cos, sin = torch.where(start, cos0, cos), torch.where(start, sin0, sin)
        return cos, sin

    @classmethod
    def from_dict(cls, d: dict) -> RopeScaling:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown RopeScaling keys: {', '.join(map(str, unknown))}")
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in ("factors", "short_factors"):
            if d[name] is not None:
                d[name] = list(d[name])
        return d


def mixed_window_scaling(scaling: RopeScaling) -> RopeScaling:
    """LongRoPE2's mixed context window: `scaling` with a short set of ones, so that sequences of at most
    original_length positions keep the original RoPE frequencies and longer ones get the searched λ. Both keep the
    scaling's attention factor: a Phi-3 checkpoint applies one to both sets, so stock transformers computes this."""
    if scaling.method != "longrope" or scaling.short_factors is not None:
        raise ValueError("a mixed context window adds a short factor set of ones to LongRoPE factors without one, "
                         f"not to {scaling.method!r} with short factors {scaling.short_factors}")
    return replace(scaling, short_factors=(1.0,) * len(scaling.factors), short_length=scaling.original_length)


def equivalent_factors(scaling: RopeScaling, head_dim: int, base: float, seq_len: int | None = None) -> torch.Tensor:
    """The λ per pair that reproduces `scaling`'s frequencies as LongRoPE factors (PI: all s; YaRN: its blend)."""
    return _rope(head_dim, base) / scaling.inv_freq(head_dim, base, seq_len)


def rope_geometry(config) -> tuple[int, float]:
    """(rotary head dim, rope θ) of a transformers-5 model config."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    head_dim = int(head_dim * getattr(config, "partial_rotary_factor", 1.0))
    return head_dim, float(config.rope_parameters["rope_theta"])
