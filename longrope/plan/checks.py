"""The cross-key checks the JSON schema cannot express; each error names its key."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from longrope.data.sources import ROLES, Source, SourceError
from longrope.harness.suites import Suite
from longrope.parallelism.memory import sequence_split_error
from longrope.plan.settings import LLAMA_CPP_CONTEXT_STEP, PlanError
from longrope.training.deepspeed_config import load_deepspeed_config

if TYPE_CHECKING:  # graph.Plan runs these checks as it is built
    from longrope.plan.graph import Plan


def check(plan: Plan, require_files: bool) -> None:
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
