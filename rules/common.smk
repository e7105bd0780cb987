import json
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from longrope.data import book_path, list_books
from longrope.deepspeed_config import load_deepspeed_config
from longrope.memory import sequence_split_error
from longrope.search import config_from_settings

validate(config, schema="../config/schema.yaml")

ENV = "../envs/longrope.yaml"
TOKENIZER = "results/data/tokenizer"  # a Hugging Face tokenizer folder
PYTHON = sys.executable
SCRIPTS = Path(workflow.basedir, "scripts")
L0 = config["base_model"]["original_length"]
EVAL = config["evaluation"]
DTYPE = config["compute"]["dtype"]
PLOTS = config["plots"]


def _check_config():
    """Cross-key checks the JSON schema cannot express; each names the offending key."""
    base = config["base_model"]
    path, gguf = base["path"], base["gguf"]
    if path is not None and gguf is not None:
        raise WorkflowError("base_model: set path (a Hugging Face folder) or gguf (a GGUF file to convert), not both")
    if path is not None and not Path(path, "config.json").is_file():
        raise WorkflowError(f"base_model.path: model directory '{path}' does not exist or has no config.json")
    if base["fetch"] and gguf is None:
        raise WorkflowError("base_model.fetch extracts a GGUF file: base_model.gguf must name where it goes")
    if gguf is not None and not base["fetch"] and not Path(gguf).is_file():
        raise WorkflowError(f"base_model.gguf: '{gguf}' does not exist (and no base_model.fetch brings it)")
    if base_source() == "pretrain" and "pretrain" not in config:
        raise WorkflowError("base_model.path and base_model.gguf are null, so a 'pretrain' section is required to "
                            "build the base model")
    tok = config["data"]["tokenizer"]
    if tok["kind"] == "bpe" and "vocab_size" not in tok:
        raise WorkflowError("data.tokenizer.vocab_size is required when data.tokenizer.kind is 'bpe'")
    if tok["kind"] == "pretrained" and not (gguf or (path and Path(path, "tokenizer.json").is_file())):
        raise WorkflowError(f"data.tokenizer.kind 'pretrained' reads tokenizer.json from base_model.path "
                            f"(or the model converted from base_model.gguf), but '{path}' has none")
    for key in ("train_books", "heldout_books"):
        try:
            books(key)
        except FileNotFoundError as error:
            raise WorkflowError(f"data.{key}: {error}")
    if EVAL["min_samples"] > EVAL["max_samples"]:
        raise WorkflowError(f"evaluation.min_samples ({EVAL['min_samples']}) exceeds evaluation.max_samples "
                            f"({EVAL['max_samples']})")
    stages = list(config["stages"])
    for stage in search_stages():
        settings, scale = stage_search(stage), config["stages"][stage]["scale"]
        key = f"stages.{stage}.search"
        _check_model_ref(settings["model"], stage, f"{key}.model")
        if settings["mode"] in ("secondary", "recovery"):
            earlier = settings.get("base_stage")
            if earlier not in search_stages() or stages.index(earlier) >= stages.index(stage):
                raise WorkflowError(f"{key}.base_stage must name an earlier search stage, got {earlier!r}")
            if settings["mode"] == "secondary":
                scale /= config["stages"][earlier]["scale"]
        if settings["mode"] == "recovery":
            if isinstance(settings["ceiling"], str):
                raise WorkflowError(f"{key}: a recovery search needs a reduced numeric ceiling")
            if settings["n_hat"] != [0]:
                raise WorkflowError(f"{key}.n_hat: a recovery search keeps base_stage's n̂; set n_hat: [0]")
        try:
            config_from_settings(settings, scale)
        except ValueError as error:
            raise WorkflowError(f"{key}: {error}")
        if settings["fidelity"] and settings["fidelity"][-1] >= settings["samples"]:
            raise WorkflowError(f"{key}.fidelity {settings['fidelity']}: every rung must score fewer windows than "
                                f"samples ({settings['samples']}), which the last rung scores")
    for stage in finetune_stages():
        if stage not in search_stages():
            raise WorkflowError(f"stages.{stage}.finetune needs stages.{stage}.search: it trains with those factors")
        settings = stage_finetune(stage)
        _check_model_ref(settings["from"], stage, f"stages.{stage}.finetune.from")
        nodes = job_resources("finetune", stage).get("nodes", 1)
        for key, value in ((f"stages.{stage}.finetune.processes", settings["processes"]),
                           (f"stages.{stage}.resources.finetune.nodes", nodes)):
            if value > 1 and not settings["deepspeed"]:
                raise WorkflowError(f"{key} > 1 needs a deepspeed config")
        length = (settings["mixed_window"] or {}).get("length")
        if length is not None and length > L0:
            raise WorkflowError(f"stages.{stage}.finetune.mixed_window.length {length} exceeds "
                                f"base_model.original_length {L0}: short windows must fit the original context")
        ranks = settings["processes"] * nodes
        gpus = job_resources("finetune", stage).get("gpu")
        if gpus and gpus != ranks:
            raise WorkflowError(f"stages.{stage}.resources.finetune.gpu is {gpus}, but fine-tuning runs {ranks} "
                                f"processes (finetune.processes × nodes), one per GPU")
        if settings["deepspeed"]:
            try:
                load_deepspeed_config(settings["deepspeed"])
            except (OSError, ValueError) as error:
                raise WorkflowError(f"stages.{stage}.finetune.deepspeed: {error}")
    resource_sets = [("resources", None, None)]
    for stage, spec in config["stages"].items():
        for kind in spec.get("resources", {}):
            if kind not in spec:
                raise WorkflowError(f"stages.{stage}.resources.{kind}: the stage has no {kind} section")
            resource_sets.append((f"stages.{stage}.resources.{kind}", kind, stage))
    for key, kind, stage in resource_sets:
        spec = job_resources(kind, stage)
        if spec.get("gpu") and spec.get("gres"):
            raise WorkflowError(f"{key}: set gpu or gres, not both (the top-level resources are merged in)")
        if spec.get("nodes", 1) > 1 and kind != "finetune":
            raise WorkflowError(f"{key}.nodes: only fine-tuning spans several nodes")
    _check_sequence_parallel()
    export = config.get("export")
    if export and export["stage"] not in search_stages():
        raise WorkflowError(f"export.stage must name a search stage, got {export['stage']!r}")
    overlap = set(books("train_books")) & set(books("heldout_books"))
    if overlap:
        raise WorkflowError(f"data: held-out books also in train_books: {', '.join(sorted(overlap))}")


def _check_sequence_parallel():
    """parallel.sequence: the heads split over the ranks, a kernel that masks causally by itself, and jobs whose
    GPUs and ranks agree with it."""
    heads = model_heads()
    for stage in [None, *config["stages"]]:
        n = sequence_ranks(stage)
        key = "evaluation.parallel.sequence" if stage is None else f"stages.{stage}.parallel.sequence"
        if n == 1:
            continue
        error = heads and sequence_split_error(*heads, n)
        if error:
            raise WorkflowError(f"{key} = {n}: {error}")
        attentions = [EVAL["attention"]] if stage is None or stage in search_stages() else []
        if stage in finetune_stages():
            attentions.append(stage_finetune(stage)["attention"])
        if "eager" in attentions:
            raise WorkflowError(f"{key} = {n} needs sdpa or flash_attention_2 attention, not eager")
        if stage in search_stages():
            workers, gpus = stage_search(stage)["workers"], job_resources("search", stage).get("gpu")
            if gpus and gpus != workers * n:
                raise WorkflowError(f"stages.{stage}.resources.search.gpu is {gpus}, but the search runs {workers * n} "
                                    f"processes (search.workers × parallel.sequence), one per GPU")
        if stage in finetune_stages():
            ranks = stage_finetune(stage)["processes"] * job_resources("finetune", stage).get("nodes", 1)
            if ranks % n:
                raise WorkflowError(f"{key} = {n} must divide the fine-tune's {ranks} ranks (finetune.processes × "
                                    f"nodes): each group of {n} ranks shares one row")


def sequence_ranks(stage=None):
    """parallel.sequence of a stage (its search and fine-tune jobs), or of the evaluation jobs (stage None)."""
    section = EVAL if stage is None else config["stages"][stage]
    return section.get("parallel", {}).get("sequence", 1)


def model_heads():
    """(attention heads, KV heads) of the base model (every stage's model shares them), or None when its
    config.json does not say or it is yet to be converted from a GGUF; the job then checks them when it loads it."""
    path = config["base_model"]["path"]
    if base_source() == "gguf":
        return None
    if path is None:
        return (config["pretrain"]["model"]["num_heads"],) * 2
    architecture = json.loads(Path(path, "config.json").read_text())
    if "num_attention_heads" not in architecture:
        return None
    heads = architecture["num_attention_heads"]
    return heads, architecture.get("num_key_value_heads") or heads


def _check_model_ref(ref, stage, key):
    """A stage's model is the base model or the fine-tuned model of an earlier stage."""
    stages = list(config["stages"])
    if ref != "base" and (ref not in finetune_stages() or stages.index(ref) >= stages.index(stage)):
        raise WorkflowError(f"{key} must be 'base' or an earlier stage with a finetune section, got {ref!r}")


CORPUS = Path(workflow.basedir, config["data"]["corpus_dir"])


def books(key):
    """Book names (globs expanded, sorted) of data.train_books or data.heldout_books."""
    return list_books(CORPUS, config["data"][key])


def tokenizer_inputs(wildcards):
    """The pretraining books a tokenizer is trained on, or the base model's folder with its own tokenizer."""
    if config["data"]["tokenizer"]["kind"] == "pretrained":
        return {"pretrained": base_model_dir()}
    return {"books": [book_path(CORPUS, b) for b in books("train_books")]}


def base_source():
    """Where the base model comes from: a Hugging Face folder, a GGUF file converted here, or pretraining here."""
    return "path" if config["base_model"]["path"] else "gguf" if config["base_model"]["gguf"] else "pretrain"


def base_model_dir():
    return config["base_model"]["path"] or "results/base/model"


def pretrain_outputs():
    return ["results/plots/pretrain_loss.png"] if base_source() == "pretrain" else []


def model_dir(ref):
    """Folder of the model a config names: 'base', or a stage whose fine-tuned model it is."""
    return base_model_dir() if ref == "base" else f"results/finetune/{ref}/model"


def model_label(ref):
    return "base" if ref == "base" else f"ft_{ref}"


def finetune_stages():
    return [name for name, stage in config["stages"].items() if "finetune" in stage]


def stage_finetune(stage):
    """The stage's fine-tune settings: the top-level `finetune:` block, then the stage's own overrides."""
    settings = {"from": "base", **config["finetune"], **config["stages"][stage]["finetune"]}
    if settings["deepspeed"]:  # relative to the workflow, like data.corpus_dir
        settings["deepspeed"] = str(Path(workflow.basedir, settings["deepspeed"]))
    return settings


def launcher(settings, resources):
    """One process runs the script with this Python; several on one node are started by torchrun (gloo or NCCL);
    on several nodes srun starts every rank inside the job's allocation (SLURM_PROCID → RANK)."""
    n, nodes = settings["processes"], resources.get("nodes", 1)
    if nodes > 1:
        return f"srun --nodes {nodes} --ntasks-per-node {n} {PYTHON}"
    return PYTHON if n == 1 else f"{PYTHON} -m torch.distributed.run --standalone --nproc_per_node {n}"


def job_resources(kind=None, stage=None):
    """Cluster resources of a heavy job: the top-level `resources:`, then the stage's `resources.<kind>` (kind:
    search or finetune) over it; a perplexity job (kind evaluate) gets resources.gpu × evaluation.parallel.sequence
    GPUs. Local runs ignore them; the SLURM profile turns them into sbatch options."""
    spec = dict(config["resources"])
    if kind == "evaluate" and spec.get("gpu"):
        spec["gpu"] *= sequence_ranks()
    if stage is not None:
        spec.update(config["stages"][stage].get("resources", {}).get(kind, {}))
    if kind == "finetune" and spec.get("nodes", 1) > 1:
        # The rule's own srun starts the ranks (launcher()), so the job runs its command directly (`mpi`), with one
        # task per rank, each with the stage's threads, and on GPU jobs one task per GPU (the plugin would otherwise
        # read `tasks` as tasks per GPU).
        settings = stage_finetune(stage)
        spec.update(mpi="srun", tasks=spec["nodes"] * settings["processes"])
        if spec.get("gpu") or "gpu" in spec.get("gres", ""):
            spec["tasks_per_gpu"] = 1
        if "cpus_per_gpu" not in spec:
            spec["cpus_per_task"] = settings["threads"]
    return spec


def search_stages():
    return [name for name, stage in config["stages"].items() if "search" in stage]


def stage_search(stage):
    """The stage's search settings: the top-level `search:` block, halved P, N1, N2 above
    search.halve_above_scale (the paper's rule for windows over 512k), then the stage's own overrides."""
    settings = dict(config["search"])
    if config["stages"][stage]["scale"] > settings["halve_above_scale"]:
        for key in ("population", "mutations", "crossovers"):
            settings[key] = max(1, settings[key] // 2)
    return {"model": "base", **settings, **config["stages"][stage]["search"]}


def n_hat_stages():
    """Stages whose target gets the n̂ study of plain RoPE baselines on the base model (paper Table 2)."""
    return [stage for stage in search_stages() if stage_search(stage)["mode"] == "plain"]


def search_runs():
    """Search rules to generate, name -> (stage, settings): every search stage, plus its λ-only twin
    (n̂ fixed at 0) when search.ablation is on, for the paper's Table 11."""
    runs = {}
    for stage in search_stages():
        settings = stage_search(stage)
        runs[stage] = (stage, settings)
        if settings["ablation"] and settings["n_hat"] != [0]:
            runs[f"{stage}_lambda"] = (stage, {**settings, "n_hat": [0]})
    return runs


def search_inputs(settings):
    inputs = {"model": model_dir(settings["model"]), "tokens": "results/data/fitness.npy", "tokenizer": TOKENIZER}
    if settings["mode"] in ("secondary", "recovery"):
        inputs["base_factors"] = f"results/search/{settings['base_stage']}/factors.json"
    return inputs


def finetune_label(stage):
    """Method label of a fine-tuned model under the scaling it was trained with."""
    return "longrope_mixed" if stage_finetune(stage)["mixed_window"] else "longrope"


def search_label(run):
    if run.endswith("_lambda"):
        return "longrope_lambda"
    return "longrope_short" if search_runs()[run][1]["mode"] == "recovery" else "longrope"


def scaling_spec(method, scale, n_hat=0):
    """A RopeScaling as a plain dict (rule params must be plain data to be tracked)."""
    return {"method": method, "original_length": L0, "target_length": round(scale * L0), "n_hat": n_hat}


def final_scale():
    return max(float(s["scale"]) for s in config["stages"].values())


def retrieval_subjects():
    """Passkey and needle subjects, name -> model label, model folder, method, and factors file, scaling, or neither
    (the scaling saved with the model): the base model under plain RoPE and each of evaluation.passkey.baselines at
    the final scale, the base model with the factors searched on it (no fine-tuning), every fine-tuned model with
    the scaling it was trained with, and the exported model."""
    subjects = {}
    for method in ["none", *EVAL["passkey"]["baselines"]]:
        scaling = scaling_spec(method, 1.0 if method == "none" else final_scale())
        subjects[f"base_{method}"] = dict(model="base", path=base_model_dir(), method=method, scaling=scaling)
    for run, (stage, settings) in search_runs().items():
        if settings["model"] == "base" and settings["mode"] == "plain" and not run.endswith("_lambda"):
            subjects[f"search_{run}"] = dict(model="base", path=base_model_dir(), method="longrope",
                                             factors=f"results/search/{run}/factors.json")
    for stage in finetune_stages():  # no factors or scaling: the one saved with the model, as it was trained
        subjects[f"ft_{stage}"] = dict(model=model_label(stage), path=model_dir(stage), method=finetune_label(stage))
    if "export" in config:
        run = config["export"]["stage"]
        ref = stage_search(run)["model"]
        subjects["final"] = dict(model=model_label(ref), path=model_dir(ref), method=search_label(run),
                                 factors=f"results/search/{run}/factors.json")
    return subjects


def retrieval_inputs(subject):
    chosen = retrieval_subjects()[subject]
    inputs = {"model": chosen["path"], "tokenizer": TOKENIZER}
    if "factors" in chosen:
        inputs["factors"] = chosen["factors"]
    return inputs


def extension_scales():
    """Stage scales past L0: where baselines are evaluated (at scale 1 every baseline is plain RoPE)."""
    return sorted({float(s["scale"]) for s in config["stages"].values()} - {1.0})


_check_config()
