"""The plan's settings: one frozen dataclass per concern (search, fine-tune, a stage, a search run, an evaluation
subject, the base model, the export), the paths and constants rules share, and the plan's error."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields

from longrope.search.engine import SearchConfig, config_from_settings

TOKENIZER = "results/data/tokenizer"  # a Hugging Face tokenizer folder
STORES = "results/data/stores"  # token stores, one folder per source share and tokenizer (Selection.store_name)
SOURCE_MANIFESTS = "results/sources"  # <source>.json: the commit and files a hub source was fetched at
# Snakemake priority of the recipe's chain (token stores, stage searches and fine-tunes): every later stage waits
# on it, so it goes first, and the evaluations and λ-only twins (priority 0) fill the other cores. Snakemake does
# not pass a priority on to a job's inputs, so each rule on the chain names it.
CHAIN_PRIORITY = 1
CONVERTED_BASE = "results/base/model"  # the base model pretrained, converted from a GGUF or linked from the hub here
# llama.cpp rounds a context's length per sequence up to a multiple of this before it picks the LongRoPE factor set
LLAMA_CPP_CONTEXT_STEP = 256
ABLATION_TWINS = ("_lambda", "_nhat")  # run-name suffixes of a stage's ablation twins (SearchRun)
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PlanError(ValueError):
    """A config that cannot run; the message names the offending key."""


def _from_dict(cls, settings: dict):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise PlanError(f"{cls.__name__}: unknown keys {', '.join(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})


def _to_dict(settings) -> dict:
    """Settings as plain data (lists, not tuples), for rule params and JSON."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}


@dataclass(frozen=True)
class SearchSettings:
    """One search run's settings: the top-level `search:` block, halved above halve_above_scale, then the stage's."""

    mode: str
    population: int
    mutations: int
    crossovers: int
    parents: int
    generations: int
    mutation_prob: float
    ceiling: str | float
    n_hat: tuple[int, ...]
    samples: int
    fitness: str
    needles: int
    batch: int
    seed: int
    early_stop_window: int | None
    fidelity: tuple[int, ...]
    promote: float
    threads: int
    workers: int
    halve_above_scale: float
    ablation: bool
    model: str = "base"
    base_stage: str | None = None
    documents: dict | None = None  # absent from the settings a factors.json of an older run recorded

    from_dict = classmethod(_from_dict)

    to_dict = _to_dict

    def engine_config(self, scale: float) -> SearchConfig:
        """The engine's settings for a search of `scale` (the remaining ratio of a secondary search)."""
        return config_from_settings(self.to_dict(), scale)


@dataclass(frozen=True)
class FinetuneSettings:
    """One stage's fine-tune settings: the top-level `finetune:` block, then the stage's own keys."""

    steps: int
    batch_size: int
    micro_batch_size: int | None
    seq_len: int | None
    lr: float
    warmup_steps: int
    schedule: str
    min_lr_ratio: float
    betas: tuple[float, float]
    weight_decay: float
    grad_clip: float
    seed: int
    checkpoint_every: int
    passkey_fraction: float
    sampling: str
    epochs: int
    mixed_window: dict | None
    deepspeed: str | None  # absolute path of the DeepSpeed JSON
    processes: int
    precision: str
    gradient_checkpointing: str | bool
    tile_mlp: int | None
    attention: str
    threads: int
    start: str = "base"  # the config's `from`: 'base' or an earlier fine-tuned stage

    @classmethod
    def from_dict(cls, settings: dict) -> FinetuneSettings:
        settings = dict(settings)
        if "from" in settings:
            settings["start"] = settings.pop("from")
        return _from_dict(cls, settings)

    to_dict = _to_dict

    @property
    def label(self) -> str:
        """Method label of the fine-tuned model under the scaling it was trained with."""
        return "longrope_mixed" if self.mixed_window else "longrope"


@dataclass(frozen=True)
class Stage:
    name: str
    scale: float
    search: SearchSettings | None
    finetune: FinetuneSettings | None
    sequence: int  # ranks sharing each window of this stage's search fitness and fine-tuning
    resources: dict = field(default_factory=dict)  # kind (search | finetune) -> the stage's own resources
    # The n̂ list the config asked for, when export.n_hat: zero holds this exported stage at n̂ = 0: its ablation
    # twin (<stage>_nhat) searches it, so that Table 11 shows what n̂ would have bought.
    n_hat_twin: tuple[int, ...] | None = None


@dataclass(frozen=True)
class SearchRun:
    """A search rule: a stage's search, or its ablation twin for the paper's Table 11: λ only (n̂ fixed at 0) beside
    a stage that searches n̂, or λ + n̂ beside an exported stage that export.n_hat: zero holds at n̂ = 0."""

    name: str
    stage: Stage
    settings: SearchSettings

    @property
    def rule(self) -> str:
        return f"{'recovery' if self.settings.mode == 'recovery' else 'search'}_{self.name}"

    @property
    def is_ablation_twin(self) -> bool:
        return self.name.endswith(ABLATION_TWINS)

    @property
    def priority(self) -> int:
        return 0 if self.is_ablation_twin else CHAIN_PRIORITY

    @property
    def label(self) -> str:
        if self.is_ablation_twin:
            return f"longrope{self.name[self.name.rindex('_'):]}"  # longrope_lambda, longrope_nhat
        return "longrope_short" if self.settings.mode == "recovery" else "longrope"

    @property
    def folder(self) -> str:
        return f"results/search/{self.name}"

    @property
    def factors(self) -> str:
        return f"{self.folder}/factors.json"


@dataclass(frozen=True)
class Subject:
    """A passkey and needle subject: a model folder and the scaling it runs with — a baseline `scaling` (a
    RopeScaling dict), a search's `factors` file, or neither (the scaling saved with the model)."""

    name: str
    model: str  # label: base, ft_<stage>
    path: str
    method: str
    factors: str | None = None
    scaling: dict | None = None


@dataclass(frozen=True)
class BaseModel:
    source: str  # path (a local Hugging Face folder), hub (fetched here), gguf (converted here) or pretrain (trained)
    folder: str
    original_length: int
    gguf: str | None
    fetch: dict | None
    heads: tuple[int, int] | None  # (attention heads, KV heads), None until a GGUF is converted or a hub model fetched
    repo: str | None = None  # hub only: the model id and the revision asked for
    revision: str | None = None
    model_type: str | None = None  # config.json's model_type; None until a GGUF is converted or a hub model fetched

    def identity(self) -> dict:
        """What names the base model independently of this machine (a pretrained tokenizer's identity)."""
        if self.source == "hub":
            return {"hub": self.repo, "revision": self.revision}
        return {"gguf": self.fetch["sha256"] if self.fetch else self.gguf} if self.source == "gguf" else \
            {"path": self.folder}


@dataclass(frozen=True)
class GgufSettings:
    """`export.gguf`: the GGUF's weight type (llama.cpp's names)."""

    dtype: str  # f32, f16, bf16, q8_0


@dataclass(frozen=True)
class ParitySettings:
    """`export.parity`: the lengths, windows per length and llama.cpp KV cache types of the cross-engine table, and
    the largest relative perplexity difference from stock transformers any engine may show."""

    lengths: tuple[int, ...]
    windows: int
    kv_cache: tuple[str, ...]  # f16 (llama.cpp's default), f32
    tolerance: float
    threads: int = 1


@dataclass(frozen=True)
class ExportSettings:
    """The `export:` block: the search stage whose scaling the model carries, what happens to n̂ (`n_hat`), the
    lengths of the stock-transformers check (None: derived by Plan.check_lengths), which factor set a request gets
    (`switch`), the GGUF for llama.cpp and the cross-engine parity table (None: none)."""

    stage: str
    n_hat: str  # zero: the exported stages search n̂ = 0, every engine runs the model; keep: this package only
    check_lengths: tuple[int, ...] | None
    switch: str  # dynamic: the short set within the switch length; long: the long set only
    gguf: GgufSettings | None
    parity: ParitySettings | None

    @classmethod
    def from_config(cls, spec: dict) -> ExportSettings:
        gguf, parity, check = spec["gguf"], spec["parity"], spec["check_lengths"]
        return cls(spec["stage"], spec["n_hat"], tuple(check) if check is not None else None, spec["switch"],
                   GgufSettings(**gguf) if gguf is not None else None,
                   ParitySettings(tuple(parity["lengths"]), parity["windows"], tuple(parity["kv_cache"]),
                                  parity["tolerance"], parity["threads"]) if parity is not None else None)


