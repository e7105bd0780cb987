"""The plan itself: the validated config as the stage graph, the data roles and stores, the subjects to evaluate,
and each job's cluster resources and launcher."""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from longrope.data.sources import ROLES, Selection, Source
from longrope.harness.suites import Suite
from longrope.plan.build import base_model, exported_stages, finetune_settings, search_settings, validate_schema
from longrope.plan.checks import check
from longrope.plan.settings import STORES, BaseModel, ExportSettings, SearchRun, Stage, Subject
from longrope.shipped import MANIFEST, read_manifest


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
        validate_schema(config, workflow_dir / "config" / "schema.yaml")
        base = base_model(config, workflow_dir, require_files)
        export = ExportSettings.from_config(config["export"]) if "export" in config else None
        held_at_zero = exported_stages(config) if export and export.n_hat == "zero" else ()
        stages = {}
        for name, spec in config["stages"].items():
            search = search_settings(config, name) if "search" in spec else None
            n_hat_twin = None
            if name in held_at_zero and search.mode != "recovery" and search.n_hat != (0,):  # recovery: checked
                n_hat_twin, search = search.n_hat, replace(search, n_hat=(0,))
            stages[name] = Stage(
                name, float(spec["scale"]), search,
                finetune_settings(config, name, workflow_dir) if "finetune" in spec else None,
                spec.get("parallel", {}).get("sequence", 1), spec.get("resources", {}), n_hat_twin)
        plan = cls(config, workflow_dir, base, stages, config["evaluation"], config["compute"]["dtype"], export)
        check(plan, require_files)
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
        return exported_stages(self.config) if self.export else []

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
