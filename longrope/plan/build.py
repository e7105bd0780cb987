"""Building the plan's settings from the config: the schema (defaults filled in place), the base model, each
stage's search and fine-tune blocks merged over the top-level ones."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from longrope.plan.settings import CONVERTED_BASE, HUB_ID, BaseModel, FinetuneSettings, PlanError, SearchSettings


def validate_schema(config: dict, schema_path: Path) -> None:
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


def base_model(config: dict, workflow_dir: Path, require_files: bool) -> BaseModel:
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


def search_settings(config: dict, stage: str) -> SearchSettings:
    settings = dict(config["search"])
    if config["stages"][stage]["scale"] > settings["halve_above_scale"]:  # the paper's rule for windows over 512k
        for key in ("population", "mutations", "crossovers"):
            settings[key] = max(1, settings[key] // 2)
    return SearchSettings.from_dict({"model": "base", **settings, **config["stages"][stage]["search"]})


def exported_stages(config: dict) -> list[str]:
    """export.stage and, through recovery searches (which keep their base stage's long factors and n̂), the stages
    whose factors it carries."""
    chain = [config["export"]["stage"]]
    while True:
        search = {**config["search"], **(config["stages"].get(chain[-1], {}).get("search") or {})}
        if search.get("mode") != "recovery" or search.get("base_stage") in (None, *chain):
            return chain  # a base stage that is missing or loops back is _check_search's error to report
        chain.append(search["base_stage"])


def finetune_settings(config: dict, stage: str, workflow_dir: Path) -> FinetuneSettings:
    settings = {"from": "base", **config["finetune"], **config["stages"][stage]["finetune"]}
    if settings["deepspeed"]:  # relative to the workflow, like data.corpus_dir
        settings["deepspeed"] = str(workflow_dir / settings["deepspeed"])
    return FinetuneSettings.from_dict(settings)
