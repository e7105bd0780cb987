# Snakemake glue: the plan (longrope.plan, validated once) and the input functions rules share.
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError

from longrope.config_merge import typed_command_line, with_default
from longrope.plan import CHAIN_PRIORITY, SOURCE_MANIFESTS, STORES, TOKENIZER, Plan, PlanError
from longrope.shipped import PRETRAIN_LOSS

try:
    # The user's values over the embedded default, nested --config values typed (Snakemake leaves them strings);
    # rebound rather than updated in place, since a module's `config` is the importing workflow's own dict.
    config = with_default(typed_command_line(config, workflow.config_settings.config), WORKFLOW_DIR)
    PLAN = Plan.load(config, WORKFLOW_DIR)
except PlanError as error:
    raise WorkflowError(f"Error validating config file: {error}") from None

SCRIPTS = WORKFLOW_DIR / "scripts"
L0 = PLAN.original_length
EVAL = PLAN.evaluation
DTYPE = PLAN.dtype
PLOTS = config["plots"]
BASE_MODEL = PLAN.base.folder
SEARCH_RUNS = PLAN.search_runs()
SUBJECTS = PLAN.subjects()
HARNESS_SUITES = PLAN.harness_suites()
HARNESS_SUBJECTS = PLAN.harness_subjects()
STORE_SELECTIONS = PLAN.stores()
TRAIN_TOKENS, FITNESS_TOKENS, EVALUATION_TOKENS = (PLAN.store(role) for role in ("train", "fitness", "evaluation"))


def source_inputs(selection):
    """What reading a role's source needs here: its books or files, or a hub source's manifest."""
    source = selection.source
    if source.kind == "hub":
        return {"manifest": f"{SOURCE_MANIFESTS}/{source.name}.json"}
    return {"files": [str(path) for path in source.files()]}


def store_inputs(wildcards):
    return source_inputs(STORE_SELECTIONS[wildcards.store])


def tokenizer_inputs(wildcards):
    """The train source a BPE tokenizer is trained on, or the base model's folder with its own tokenizer."""
    kind = config["data"]["tokenizer"]["kind"]
    if kind == "pretrained":
        return {"pretrained": BASE_MODEL}
    return source_inputs(PLAN.selection("train")) if kind == "bpe" else {}


def harness_outputs():
    return [f"results/tables/harness_{name}.csv" for name in HARNESS_SUITES]


def export_outputs():
    export = PLAN.export
    if export is None:
        return []
    return ["results/export/model", "results/export/stock_check.csv",
            *(["results/export/model.gguf"] if export.gguf else []),
            *(["results/tables/engine_parity.md"] if export.parity else [])]


def pretrain_loss():
    """The base model's training loss: pretrained here, or shipped beside its weights (data/base); None otherwise."""
    if PLAN.base.source == "pretrain":
        return "results/base/pretrain_loss.csv"
    shipped = Path(BASE_MODEL, PRETRAIN_LOSS)
    return str(shipped) if PLAN.base.source == "path" and shipped.is_file() else None


def pretrain_outputs():
    return ["results/plots/pretrain_loss.png"] if pretrain_loss() else []


def search_inputs(run):
    settings = SEARCH_RUNS[run].settings
    inputs = {"model": PLAN.model_dir(settings.model), "tokens": FITNESS_TOKENS, "tokenizer": TOKENIZER}
    if settings.mode in ("secondary", "recovery"):
        inputs["base_factors"] = SEARCH_RUNS[settings.base_stage].factors
    return inputs


def subject_inputs(wildcards):
    subject = SUBJECTS[wildcards.subject]
    inputs = {"model": subject.path, "tokenizer": TOKENIZER}
    if subject.factors:
        inputs["factors"] = subject.factors
    return inputs
