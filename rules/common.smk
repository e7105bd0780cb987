# Snakemake glue: the plan (longrope.plan, validated once) and the input functions rules share.
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError

from longrope.data.corpus import book_path
from longrope.plan import TOKENIZER, Plan, PlanError

try:
    PLAN = Plan.load(config, workflow.basedir)
except PlanError as error:
    raise WorkflowError(f"Error validating config file: {error}") from None

ENV = "../envs/longrope.yaml"
SCRIPTS = Path(workflow.basedir, "scripts")
L0 = PLAN.original_length
EVAL = PLAN.evaluation
DTYPE = PLAN.dtype
PLOTS = config["plots"]
BASE_MODEL = PLAN.base.folder
SEARCH_RUNS = PLAN.search_runs()
SUBJECTS = PLAN.retrieval_subjects()


def book_files(key):
    """The .txt.gz files of data.train_books or data.heldout_books."""
    return [book_path(PLAN.corpus, name) for name in PLAN.books(key)]


def tokenizer_inputs(wildcards):
    """The pretraining books a tokenizer is trained on, or the base model's folder with its own tokenizer."""
    if config["data"]["tokenizer"]["kind"] == "pretrained":
        return {"pretrained": BASE_MODEL}
    return {"books": book_files("train_books")}


def pretrain_outputs():
    return ["results/plots/pretrain_loss.png"] if PLAN.base.source == "pretrain" else []


def search_inputs(run):
    settings = SEARCH_RUNS[run].settings
    inputs = {"model": PLAN.model_dir(settings.model), "tokens": "results/data/fitness", "tokenizer": TOKENIZER}
    if settings.mode in ("secondary", "recovery"):
        inputs["base_factors"] = SEARCH_RUNS[settings.base_stage].factors
    return inputs


def retrieval_inputs(wildcards):
    subject = SUBJECTS[wildcards.subject]
    inputs = {"model": subject.path, "tokenizer": TOKENIZER}
    if subject.factors:
        inputs["factors"] = subject.factors
    return inputs
