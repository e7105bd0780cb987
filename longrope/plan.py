"""The plan: a workflow config validated once and turned into typed, frozen settings.

`Plan.load(config, workflow_dir)` fills the schema's defaults (config/schema.yaml, as `snakemake.utils.validate`
does), merges each stage's search and fine-tune settings over the top-level blocks, resolves paths relative to the
workflow, and runs every cross-key check the schema cannot express; each error names its key. The Snakefile builds
it once (rules/common.smk) and hands its pieces to rules as plain data; scripts rebuild the piece they get with
`SearchSettings.from_dict` / `FinetuneSettings.from_dict`, which re-merge and re-default nothing.

The compute dtype stays the config's request ('auto', 'float32', 'bfloat16'): it is resolved by
`longrope.model.compute_dtype` on the machine that runs the job, because a cluster's submitting node may have no GPU.

May import: yaml, jsonschema, longrope.search.engine (SearchConfig validates the search settings),
longrope.parallelism.memory (the heads check), longrope.training.deepspeed_config, longrope.data.sources,
longrope.harness.suites. No torch.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import yaml

from longrope.data.sources import ROLES, Selection, Source, SourceError
from longrope.harness.suites import Suite
from longrope.parallelism.memory import sequence_split_error
from longrope.search.engine import SearchConfig, config_from_settings
from longrope.shipped import MANIFEST, read_manifest
from longrope.training.deepspeed_config import load_deepspeed_config

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
                                  parity["tolerance"]) if parity is not None else None)


@dataclass(frozen=True)
class Plan:
    config: dict  # the validated config, defaults filled: what Snakemake's `config` holds
    workflow_dir: Path
    base: BaseModel
    stages: dict[str, Stage]
    evaluation: dict
    dtype: str  # compute.dtype as requested; resolved per job by longrope.model.compute_dtype
    export: ExportSettings | None

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def load(cls, config: dict, workflow_dir: str | Path, require_files: bool = True) -> Plan:
        """Validate `config` (filling its defaults in place, as Snakemake's validate) and build the plan.
        `require_files=False` is for planning a cluster's run from elsewhere (longrope.tools.plan_memory): the
        base model's folder, its GGUF and tokenizer and the books need not exist here."""
        workflow_dir = Path(workflow_dir)
        _validate_schema(config, workflow_dir / "config" / "schema.yaml")
        base = _base_model(config, workflow_dir, require_files)
        export = ExportSettings.from_config(config["export"]) if "export" in config else None
        held_at_zero = _exported_stages(config) if export and export.n_hat == "zero" else ()
        stages = {}
        for name, spec in config["stages"].items():
            search = _search_settings(config, name) if "search" in spec else None
            n_hat_twin = None
            if name in held_at_zero and search.mode != "recovery" and search.n_hat != (0,):  # recovery: checked
                n_hat_twin, search = search.n_hat, replace(search, n_hat=(0,))
            stages[name] = Stage(
                name, float(spec["scale"]), search,
                _finetune_settings(config, name, workflow_dir) if "finetune" in spec else None,
                spec.get("parallel", {}).get("sequence", 1), spec.get("resources", {}), n_hat_twin)
        plan = cls(config, workflow_dir, base, stages, config["evaluation"], config["compute"]["dtype"], export)
        _check(plan, require_files)
        return plan

    # -- the stage graph -------------------------------------------------------------------------

    @property
    def original_length(self) -> int:
        return self.base.original_length

    # -- data --------------------------------------------------------------------------------------

    @property
    def sources(self) -> dict[str, Source]:
        return {name: Source.from_config(name, spec, self.workflow_dir)
                for name, spec in self.config["data"]["sources"].items()}

    def selection(self, role: str) -> Selection:
        """What `role` (train, fitness, evaluation) takes from its source."""
        return Selection(self.sources[self.config["data"][role]], role)

    def tokenizer_identity(self) -> dict:
        """What decides the tokenizer's ids, as far as the config can say (each store also records the
        tokenizer's hash, checked by the jobs that read it)."""
        spec = self.config["data"]["tokenizer"]
        if spec["kind"] == "pretrained":
            return {"kind": "pretrained", **self.base.identity()}
        if spec["kind"] == "bpe":
            return {**spec, "trained_on": self.selection("train").describe()}
        return {"kind": spec["kind"]}

    def store(self, role: str) -> str:
        """The token store a role's jobs read."""
        return f"{STORES}/{self.selection(role).store_name(self.tokenizer_identity())}"

    def stores(self) -> dict[str, Selection]:
        """Every token store the config reads, by folder name."""
        return {Path(self.store(role)).name: self.selection(role) for role in ROLES}

    def search_stages(self) -> list[str]:
        return [name for name, stage in self.stages.items() if stage.search]

    def finetune_stages(self) -> list[str]:
        return [name for name, stage in self.stages.items() if stage.finetune]

    def search_runs(self) -> dict[str, SearchRun]:
        """Every search stage, plus its ablation twin when search.ablation is on: λ only beside a stage searching
        n̂, λ + n̂ beside an exported stage held at n̂ = 0."""
        runs = {}
        for name in self.search_stages():
            stage = self.stages[name]
            runs[name] = SearchRun(name, stage, stage.search)
            if not stage.search.ablation:
                continue
            if stage.search.n_hat != (0,):
                runs[f"{name}_lambda"] = SearchRun(f"{name}_lambda", stage, replace(stage.search, n_hat=(0,)))
            elif stage.n_hat_twin:
                runs[f"{name}_nhat"] = SearchRun(f"{name}_nhat", stage, replace(stage.search, n_hat=stage.n_hat_twin))
        return runs

    def exported_stages(self) -> list[str]:
        """The search stages whose factors the exported model carries, export stage first (empty without export)."""
        return _exported_stages(self.config) if self.export else []

    def export_provenance(self) -> dict:
        """What the exported model's card says of its origin, as plain data: the base model and each role's corpus."""
        base = {"made by": self.base.source, **self.base.identity(), "original length (L0)": self.original_length}
        if self.base.source == "pretrain":
            pretrain = self.config["pretrain"]
            base.update(architecture=pretrain["model"], steps=pretrain["train"]["steps"], seed=pretrain["seed"])
        elif self.base.source == "path" and Path(self.base.folder, MANIFEST).is_file():  # the shipped base
            shipped = read_manifest(self.base.folder)
            base.update({"shipped recipe (sha256)": shipped["recipe_sha256"], "trained at commit": shipped["commit"],
                         "steps": shipped["steps"], "seed": shipped["seed"], "trained on": shipped["cpu"]})
        return {"base": base, "corpora": {role: self.selection(role).describe() for role in ROLES}}

    def check_lengths(self) -> list[int]:
        """Where results/export/stock_check.csv compares stock transformers with this package: export.check_lengths,
        or L0, the switch length (within it the short set, beyond it the long set) and the exported target length."""
        if self.export.check_lengths is not None:
            return list(self.export.check_lengths)
        lengths = [round(self.stages[name].scale * self.original_length) for name in self.exported_stages()]
        return sorted({self.original_length, *lengths})

    def n_hat_stages(self) -> list[str]:
        """Stages whose target gets the n̂ study of plain RoPE baselines on the base model (paper Table 2)."""
        return [name for name in self.search_stages() if self.stages[name].search.mode == "plain"]

    def model_dir(self, ref: str) -> str:
        """Folder of the model a config names: 'base', or a stage whose fine-tuned model it is."""
        return self.base.folder if ref == "base" else f"results/finetune/{ref}/model"

    @staticmethod
    def model_label(ref: str) -> str:
        return "base" if ref == "base" else f"ft_{ref}"

    def final_scale(self) -> float:
        return max(stage.scale for stage in self.stages.values())

    def search_scales(self) -> list[float]:
        return sorted({self.stages[name].scale for name in self.search_stages()})

    def extension_scales(self) -> list[float]:
        """Stage scales past L0: where baselines are evaluated (at scale 1 every baseline is plain RoPE)."""
        return sorted({stage.scale for stage in self.stages.values()} - {1.0})

    def scaling_spec(self, method: str, scale: float, n_hat: int = 0) -> dict:
        """A RopeScaling as a plain dict (rule params must be plain data to be tracked)."""
        L0 = self.original_length
        return {"method": method, "original_length": L0, "target_length": round(scale * L0), "n_hat": n_hat}

    def baseline_scalings(self, method: str) -> list[tuple[str, dict]]:
        """(label, scaling) of a baseline at every stage's scale; plain RoPE once, at scale 1."""
        scales = [1.0] if method == "none" else self.extension_scales()
        return [(method, self.scaling_spec(method, s)) for s in scales]

    def n_hat_scalings(self, stage: str) -> list[tuple[str, dict]]:
        """PI and dynamic NTK at a stage's scale with each n̂ of evaluation.n_hat_study (paper Table 2)."""
        scale = self.stages[stage].scale
        return [(m, self.scaling_spec(m, scale, k))
                for m in ("pi", "dynamic_ntk") for k in self.evaluation["n_hat_study"]]

    def harness_suites(self) -> dict[str, Suite]:
        """The lm-evaluation-harness suites of `harness:`, their built-in defaults filled."""
        harness = self.config.get("harness") or {"suites": {}}
        return {name: Suite.from_config(name, spec) for name, spec in harness["suites"].items()}

    def harness_subjects(self) -> list[str]:
        """The subjects the harness evaluates: harness.subjects (all by default), base_none always (retention's
        reference)."""
        chosen = (self.config.get("harness") or {}).get("subjects") or list(self.subjects())
        return ["base_none", *[name for name in chosen if name != "base_none"]]

    def subjects(self) -> dict[str, Subject]:
        """What retrieval and the harness evaluate, by name: the base model under plain RoPE and each of
        evaluation.passkey.baselines at the final scale, the base model
        with the factors searched on it (no fine-tuning), every fine-tuned model with the scaling it was trained
        with, and the exported model."""
        subjects = {}
        for method in ["none", *self.evaluation["passkey"]["baselines"]]:
            scaling = self.scaling_spec(method, 1.0 if method == "none" else self.final_scale())
            subjects[f"base_{method}"] = Subject(f"base_{method}", "base", self.base.folder, method, scaling=scaling)
        for name, run in self.search_runs().items():
            if run.settings.model == "base" and run.settings.mode == "plain" and not run.is_ablation_twin:
                subjects[f"search_{name}"] = Subject(f"search_{name}", "base", self.base.folder, "longrope",
                                                     factors=run.factors)
        for name in self.finetune_stages():
            subjects[f"ft_{name}"] = Subject(f"ft_{name}", self.model_label(name), self.model_dir(name),
                                             self.stages[name].finetune.label)
        if self.export:
            run = self.search_runs()[self.export.stage]
            model = run.settings.model
            subjects["final"] = Subject("final", self.model_label(model), self.model_dir(model), run.label,
                                        factors=run.factors)
        return subjects

    def finetuned(self) -> list[dict]:
        """Each fine-tuned model, the method it is evaluated under, the model its factors were searched on."""
        return [{"model": self.model_label(name), "method": self.stages[name].finetune.label,
                 "from": self.model_label(self.stages[name].search.model), "scale": self.stages[name].scale}
                for name in self.finetune_stages()]

    # -- jobs ------------------------------------------------------------------------------------

    def sequence_ranks(self, stage: str | None = None) -> int:
        """parallel.sequence of a stage (its search and fine-tune jobs), or of the evaluation jobs (stage None)."""
        if stage is None:
            return self.evaluation.get("parallel", {}).get("sequence", 1)
        return self.stages[stage].sequence

    def job_resources(self, kind: str | None = None, stage: str | None = None) -> dict:
        """Cluster resources of a heavy job: the top-level `resources:`, then the stage's `resources.<kind>` (kind:
        search or finetune) over it; a perplexity job (kind evaluate) gets resources.gpu × evaluation.parallel.sequence
        GPUs. Local runs ignore them; the SLURM profile turns them into sbatch options."""
        spec = dict(self.config["resources"])
        if kind == "evaluate" and spec.get("gpu"):
            spec["gpu"] *= self.sequence_ranks()
        if stage is not None:
            spec.update(self.stages[stage].resources.get(kind, {}))
        if kind == "finetune" and spec.get("nodes", 1) > 1:
            # The rule's own srun starts the ranks (launcher()), so the job runs its command directly (`mpi`), with
            # one task per rank, each with the stage's threads, and on GPU jobs one task per GPU (the plugin would
            # otherwise read `tasks` as tasks per GPU).
            settings = self.stages[stage].finetune
            spec.update(mpi="srun", tasks=spec["nodes"] * settings.processes)
            if spec.get("gpu") or "gpu" in spec.get("gres", ""):
                spec["tasks_per_gpu"] = 1
            if "cpus_per_gpu" not in spec:
                spec["cpus_per_task"] = settings.threads
        return spec

    def launcher(self, stage: str) -> str:
        """One process runs the fine-tune script with this Python; several on one node are started by torchrun (gloo
        or NCCL); on several nodes srun starts every rank inside the job's allocation (SLURM_PROCID → RANK)."""
        n, nodes = self.stages[stage].finetune.processes, self.job_resources("finetune", stage).get("nodes", 1)
        if nodes > 1:
            return f"srun --nodes {nodes} --ntasks-per-node {n} {sys.executable}"
        if n == 1:
            return sys.executable
        return f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node {n}"


# ---------------------------------------------------------------------------------------------
# Building blocks


def _validate_schema(config: dict, schema_path: Path) -> None:
    """JSON-schema validation that fills defaults, as snakemake.utils.validate (draft 2020-12)."""
    from jsonschema import Draft202012Validator, ValidationError, validators

    schema = yaml.safe_load(schema_path.read_text())
    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema_of):
        for name, subschema in properties.items():
            if "$ref" in subschema and "default" not in subschema:  # a shared definition's default (threads)
                subschema = schema["definitions"][subschema["$ref"].rsplit("/", 1)[-1]]
            if "default" in subschema and isinstance(instance, dict):  # not in a nullable block left null
                instance.setdefault(name, subschema["default"])
        yield from check_properties(validator, properties, instance, subschema_of)

    Validator = validators.extend(Draft202012Validator, {"properties": set_defaults})
    try:
        Validator(schema).validate(config)
    except ValidationError as error:
        where = ".".join(map(str, error.absolute_path)) or "config"
        raise PlanError(f"{where}: {error.message}") from None


def _base_model(config: dict, workflow_dir: Path, require_files: bool) -> BaseModel:
    base = config["base_model"]
    path, gguf, revision = base["path"], base["gguf"], base["revision"]
    if path is not None and not Path(path).is_absolute() and not Path(path).exists() and (workflow_dir / path).exists():
        path = str(workflow_dir / path)  # the shipped base (data/base) when the workflow runs as another's module
    if path is not None and gguf is not None:
        raise PlanError("base_model: set path (a Hugging Face folder or hub id) or gguf (a GGUF file to convert), "
                        "not both")
    on_hub = path is not None and not Path(path).exists() and bool(HUB_ID.match(path))
    if revision is not None and not on_hub:
        raise PlanError(f"base_model.revision pins a hub model, but base_model.path {path!r} is "
                        f"{'a local folder' if path and Path(path).exists() else 'not a hub id (org/name)'}")
    if require_files and path is not None and not on_hub and not Path(path, "config.json").is_file():
        raise PlanError(f"base_model.path: model directory '{path}' does not exist or has no config.json "
                        f"(a hub model is named org/name)")
    if base["fetch"] and gguf is None:
        raise PlanError("base_model.fetch extracts a GGUF file: base_model.gguf must name where it goes")
    if require_files and gguf is not None and not base["fetch"] and not Path(gguf).is_file():
        raise PlanError(f"base_model.gguf: '{gguf}' does not exist (and no base_model.fetch brings it)")
    source = "hub" if on_hub else "path" if path else "gguf" if gguf else "pretrain"
    if source == "pretrain" and "pretrain" not in config:
        raise PlanError("base_model.path and base_model.gguf are null, so a 'pretrain' section is required to "
                        "build the base model")
    heads, model_type = None, None
    if source == "pretrain":
        heads, model_type = (config["pretrain"]["model"]["num_heads"],) * 2, "llama"  # longrope.model.tiny_llama
    elif source == "path" and Path(path, "config.json").is_file():
        architecture = json.loads(Path(path, "config.json").read_text())
        model_type = architecture.get("model_type")
        if "num_attention_heads" in architecture:
            n = architecture["num_attention_heads"]
            heads = (n, architecture.get("num_key_value_heads") or n)
    folder = path if source == "path" else CONVERTED_BASE
    return BaseModel(source, folder, base["original_length"], gguf, base["fetch"], heads,
                     path if on_hub else None, (revision or "main") if on_hub else None, model_type)


def _search_settings(config: dict, stage: str) -> SearchSettings:
    settings = dict(config["search"])
    if config["stages"][stage]["scale"] > settings["halve_above_scale"]:  # the paper's rule for windows over 512k
        for key in ("population", "mutations", "crossovers"):
            settings[key] = max(1, settings[key] // 2)
    return SearchSettings.from_dict({"model": "base", **settings, **config["stages"][stage]["search"]})


def _exported_stages(config: dict) -> list[str]:
    """export.stage and, through recovery searches (which keep their base stage's long factors and n̂), the stages
    whose factors it carries."""
    chain = [config["export"]["stage"]]
    while True:
        search = {**config["search"], **(config["stages"].get(chain[-1], {}).get("search") or {})}
        if search.get("mode") != "recovery" or search.get("base_stage") in (None, *chain):
            return chain  # a base stage that is missing or loops back is _check_search's error to report
        chain.append(search["base_stage"])


def _finetune_settings(config: dict, stage: str, workflow_dir: Path) -> FinetuneSettings:
    settings = {"from": "base", **config["finetune"], **config["stages"][stage]["finetune"]}
    if settings["deepspeed"]:  # relative to the workflow, like data.corpus_dir
        settings["deepspeed"] = str(workflow_dir / settings["deepspeed"])
    return FinetuneSettings.from_dict(settings)


# ---------------------------------------------------------------------------------------------
# Cross-key checks the JSON schema cannot express


def _check(plan: Plan, require_files: bool) -> None:
    _check_data(plan, require_files)
    _check_search(plan)
    _check_finetune(plan)
    _check_resources(plan)
    _check_sequence_parallel(plan)
    _check_harness(plan)
    _check_export(plan)


def _check_export(plan: Plan) -> None:
    export = plan.export
    if export is None:
        return
    if export.stage not in plan.search_stages():
        raise PlanError(f"export.stage must name a search stage, got {export.stage!r}")
    # A hub model or a GGUF base is known only once fetched or converted: the export_gguf job checks it then.
    model_type = plan.base.model_type
    if export.gguf is not None and model_type is not None and model_type != "llama":
        raise PlanError(f"export.gguf writes a Llama-architecture GGUF, but the base model is {model_type!r} "
                        f"(base_model.path {plan.base.folder}); remove export.gguf")
    exported = plan.stages[export.stage]
    if export.gguf is not None and export.switch == "dynamic" and exported.search.mode == "recovery":
        switch = round(exported.scale * plan.original_length)
        if switch % LLAMA_CPP_CONTEXT_STEP:
            raise PlanError(
                f"export.switch: dynamic gives the short factor set up to {switch} tokens (stages.{export.stage}), but "
                f"llama.cpp picks a context's set from n_ctx rounded up to a multiple of {LLAMA_CPP_CONTEXT_STEP}, so "
                f"the GGUF would give some lengths the long set where transformers gives the short one: set "
                f"export.switch: long, or a stages.{export.stage}.scale × L0 that is a multiple of "
                f"{LLAMA_CPP_CONTEXT_STEP}")
    if export.n_hat == "keep":
        for key in ("gguf", "parity"):
            if getattr(export, key) is not None:
                raise PlanError(f"export.{key}: export.n_hat is 'keep', so the exported model may keep its first n̂ "
                                "positions at the original RoPE, which llama.cpp, vLLM and stock transformers do not "
                                "run; the export is for this package's loader only. Set export.n_hat: zero, or "
                                f"remove export.{key}")


def _check_data(plan: Plan, require_files: bool) -> None:
    tok, base, evaluation = plan.config["data"]["tokenizer"], plan.base, plan.evaluation
    if tok["kind"] == "bpe" and "vocab_size" not in tok:
        raise PlanError("data.tokenizer.vocab_size is required when data.tokenizer.kind is 'bpe'")
    if evaluation["min_samples"] > evaluation["max_samples"]:
        raise PlanError(f"evaluation.min_samples ({evaluation['min_samples']}) exceeds evaluation.max_samples "
                        f"({evaluation['max_samples']})")
    _check_lengths(plan)
    _check_sources(plan)
    if not require_files:
        return
    if tok["kind"] == "pretrained" and (base.source == "pretrain" or base.source == "path"
                                        and not Path(base.folder, "tokenizer.json").is_file()):
        path = base.folder if base.source == "path" else None
        raise PlanError(f"data.tokenizer.kind 'pretrained' reads tokenizer.json from base_model.path "
                        f"(a folder or hub id, or the model converted from base_model.gguf), but '{path}' has none")
    owners: dict[Path, str] = {}
    for name, source in plan.sources.items():
        if source.kind == "hub" or name not in plan.config["data"].values():
            continue
        try:
            files = source.files()
        except SourceError as error:
            raise PlanError(str(error)) from None
        for path in files:
            if owners.setdefault(path.resolve(), name) != name:
                raise PlanError(f"data.sources.{name} and data.sources.{owners[path.resolve()]} share {path}: a "
                                f"document serves one role; split one source between roles instead")


def _check_lengths(plan: Plan) -> None:
    """Each list of lengths names every length once, shortest first: a repeated length is scored twice over (the
    passkey table would pool the same seeded keys as twice the trials), and the per-length CSVs and the stock and
    parity tables keep the config's order where the paper's tables and plots sort. evaluation.lengths holds L0,
    where the gap-closed floor and Table 10's ratios are taken. No list need hold multiples of L0: windows, prompts
    and the stock and parity checks take any length (sequence parallelism pads the last shard), and lengths below
    L0 measure short-context quality."""
    evaluation, export = plan.evaluation, plan.export
    lists = {"evaluation.lengths": evaluation["lengths"],
             "evaluation.passkey.lengths": evaluation["passkey"]["lengths"],
             "evaluation.needles.lengths": evaluation["needles"]["lengths"]}
    if export is not None:
        lists["export.check_lengths"] = export.check_lengths or ()  # None: derived by Plan.check_lengths, sorted
        lists["export.parity.lengths"] = export.parity.lengths if export.parity is not None else ()
    for key, lengths in lists.items():
        repeated = sorted({n for n in lengths if lengths.count(n) > 1})
        if repeated:
            raise PlanError(f"{key} {list(lengths)} repeats {', '.join(map(str, repeated))}: list each length once")
        backwards = [f"{later} after {earlier}" for earlier, later in zip(lengths, lengths[1:]) if later < earlier]
        if backwards:
            raise PlanError(f"{key} {list(lengths)} is not in increasing order ({', '.join(backwards)}): list the "
                            "lengths shortest first")
    if plan.original_length not in evaluation["lengths"]:
        raise PlanError(f"evaluation.lengths {list(evaluation['lengths'])} lacks L0 = {plan.original_length} "
                        "(base_model.original_length): the gap-closed floor and Table 10's ratios are measured there")


def _check_sources(plan: Plan) -> None:
    """Each role names a source; a source serving several roles says how they split it, and only those roles."""
    data, sources = plan.config["data"], plan.config["data"]["sources"]
    for role in ROLES:
        if data[role] not in sources:
            raise PlanError(f"data.{role}: no source named {data[role]!r} in data.sources "
                            f"({', '.join(sorted(sources))})")
    for name, spec in sources.items():
        key, roles = f"data.sources.{name}", [role for role in ROLES if data[role] == name]
        try:
            source = Source.from_config(name, spec, plan.workflow_dir)
        except SourceError as error:
            raise PlanError(str(error)) from None
        if source.kind != "hub" and "revision" in spec:
            raise PlanError(f"{key}.revision pins a hub dataset; this source has no hub id")
        split = [role for role, _ in source.shares]
        if len(roles) > 1 and sorted(split) != sorted(roles):
            raise PlanError(f"{key} serves {', '.join(roles)}: its split must give each of them a share "
                            f"(it gives {', '.join(split) or 'none'})")
        if len(roles) <= 1 and split:
            raise PlanError(f"{key}.split divides the source between roles, but only {roles or 'no role'} uses it")
        if sum(share for _, share in source.shares) > 1 + 1e-9:
            raise PlanError(f"{key}.split: the shares add up to more than 1")


def _check_harness(plan: Plan) -> None:
    """Suites that can run, subjects that exist, and no second RULER: a real model's comes from the harness."""
    if plan.config["data"]["tokenizer"]["kind"] == "pretrained" and plan.evaluation["needles"]["lengths"]:
        raise PlanError("evaluation.needles: a model with its own tokenizer gets RULER from lm-evaluation-harness "
                        "(harness.suites.ruler); set evaluation.needles.lengths to []")
    if not plan.config.get("harness"):
        return
    for name, spec in plan.config["harness"]["suites"].items():
        try:
            suite = Suite.from_config(name, spec)
        except ValueError as error:
            raise PlanError(str(error)) from None
        if suite.threshold is not None and not suite.lengths:
            raise PlanError(f"harness.suites.{name}.lengths: the suite has a threshold (an effective length) but no "
                            f"lengths to generate its tasks at")
    unknown = sorted(set(plan.config["harness"]["subjects"] or []) - set(plan.subjects()))
    if unknown:
        raise PlanError(f"harness.subjects: no subject named {', '.join(unknown)} (there are "
                        f"{', '.join(plan.subjects())})")


def _check_model_ref(plan: Plan, ref: str, stage: str, key: str) -> None:
    """A stage's model is the base model or the fine-tuned model of an earlier stage."""
    order = list(plan.stages)
    if ref != "base" and (ref not in plan.finetune_stages() or order.index(ref) >= order.index(stage)):
        raise PlanError(f"{key} must be 'base' or an earlier stage with a finetune section, got {ref!r}")


def _check_search(plan: Plan) -> None:
    order = list(plan.stages)
    for name in plan.search_stages():
        settings, scale, key = plan.stages[name].search, plan.stages[name].scale, f"stages.{name}.search"
        _check_model_ref(plan, settings.model, name, f"{key}.model")
        if settings.mode in ("secondary", "recovery"):
            earlier = settings.base_stage
            if earlier not in plan.search_stages() or order.index(earlier) >= order.index(name):
                raise PlanError(f"{key}.base_stage must name an earlier search stage, got {earlier!r}")
            if settings.mode == "secondary":
                scale /= plan.stages[earlier].scale
        if settings.mode == "recovery":
            if isinstance(settings.ceiling, str):
                raise PlanError(f"{key}: a recovery search needs a reduced numeric ceiling")
            if settings.n_hat != (0,):
                raise PlanError(f"{key}.n_hat: a recovery search keeps base_stage's n̂; set n_hat: [0]")
        try:
            settings.engine_config(scale)
        except ValueError as error:
            raise PlanError(f"{key}: {error}") from None
        if settings.fidelity and settings.fidelity[-1] >= settings.samples:
            raise PlanError(f"{key}.fidelity {list(settings.fidelity)}: every rung must score fewer windows than "
                            f"samples ({settings.samples}), which the last rung scores")


def _check_finetune(plan: Plan) -> None:
    for name in plan.finetune_stages():
        if name not in plan.search_stages():
            raise PlanError(f"stages.{name}.finetune needs stages.{name}.search: it trains with those factors")
        settings = plan.stages[name].finetune
        _check_model_ref(plan, settings.start, name, f"stages.{name}.finetune.from")
        if settings.epochs > 1 and settings.sampling != "chunks":
            raise PlanError(f"stages.{name}.finetune.epochs {settings.epochs}: epochs count passes over chunks and "
                            f"need sampling 'chunks', not {settings.sampling!r}")
        nodes = plan.job_resources("finetune", name).get("nodes", 1)
        for key, value in ((f"stages.{name}.finetune.processes", settings.processes),
                           (f"stages.{name}.resources.finetune.nodes", nodes)):
            if value > 1 and not settings.deepspeed:
                raise PlanError(f"{key} > 1 needs a deepspeed config")
        length = (settings.mixed_window or {}).get("length")
        if length is not None and length > plan.original_length:
            raise PlanError(f"stages.{name}.finetune.mixed_window.length {length} exceeds "
                            f"base_model.original_length {plan.original_length}: short windows must fit the original "
                            "context")
        ranks = settings.processes * nodes
        gpus = plan.job_resources("finetune", name).get("gpu")
        if gpus and gpus != ranks:
            raise PlanError(f"stages.{name}.resources.finetune.gpu is {gpus}, but fine-tuning runs {ranks} "
                            f"processes (finetune.processes × nodes), one per GPU")
        if settings.deepspeed:
            try:
                load_deepspeed_config(settings.deepspeed)
            except (OSError, ValueError) as error:
                raise PlanError(f"stages.{name}.finetune.deepspeed: {error}") from None


def _check_resources(plan: Plan) -> None:
    resource_sets = [("resources", None, None)]
    for name, stage in plan.stages.items():
        for kind in stage.resources:
            if getattr(stage, kind) is None:
                raise PlanError(f"stages.{name}.resources.{kind}: the stage has no {kind} section")
            resource_sets.append((f"stages.{name}.resources.{kind}", kind, name))
    for key, kind, stage in resource_sets:
        spec = plan.job_resources(kind, stage)
        if spec.get("gpu") and spec.get("gres"):
            raise PlanError(f"{key}: set gpu or gres, not both (the top-level resources are merged in)")
        if spec.get("nodes", 1) > 1 and kind != "finetune":
            raise PlanError(f"{key}.nodes: only fine-tuning spans several nodes")


def _check_sequence_parallel(plan: Plan) -> None:
    """parallel.sequence: the heads split over the ranks, a kernel that masks causally by itself, and jobs whose
    GPUs and ranks agree with it."""
    for name in [None, *plan.stages]:
        n = plan.sequence_ranks(name)
        key = "evaluation.parallel.sequence" if name is None else f"stages.{name}.parallel.sequence"
        if n == 1:
            continue
        error = plan.base.heads and sequence_split_error(*plan.base.heads, n)
        if error:
            raise PlanError(f"{key} = {n}: {error}")
        stage = plan.stages.get(name)
        attentions = [plan.evaluation["attention"]] if stage is None or stage.search else []
        if stage is not None and stage.finetune:
            attentions.append(stage.finetune.attention)
        if "eager" in attentions:
            raise PlanError(f"{key} = {n} needs sdpa or flash_attention_2 attention, not eager")
        if stage is not None and stage.search:
            workers, gpus = stage.search.workers, plan.job_resources("search", name).get("gpu")
            if gpus and gpus != workers * n:
                raise PlanError(f"stages.{name}.resources.search.gpu is {gpus}, but the search runs {workers * n} "
                                f"processes (search.workers × parallel.sequence), one per GPU")
        if stage is not None and stage.finetune:
            ranks = stage.finetune.processes * plan.job_resources("finetune", name).get("nodes", 1)
            if ranks % n:
                raise PlanError(f"{key} = {n} must divide the fine-tune's {ranks} ranks (finetune.processes × "
                                f"nodes): each group of {n} ranks shares one row")
