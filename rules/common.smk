from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from longrope.data import book_path, list_books
from longrope.search import config_from_settings

validate(config, schema="../config/schema.yaml")

ENV = "../envs/longrope.yaml"
L0 = config["base_model"]["original_length"]
EVAL = config["evaluation"]


def _check_config():
    """Cross-key checks the JSON schema cannot express; each names the offending key."""
    path = config["base_model"]["path"]
    if path is not None and not Path(path, "config.json").is_file():
        raise WorkflowError(f"base_model.path: model directory '{path}' does not exist or has no config.json")
    if path is None and "pretrain" not in config:
        raise WorkflowError("base_model.path is null, so a 'pretrain' section is required to build the base model")
    tok = config["data"]["tokenizer"]
    if tok["kind"] == "bpe" and "vocab_size" not in tok:
        raise WorkflowError("data.tokenizer.vocab_size is required when data.tokenizer.kind is 'bpe'")
    for key in ("train_books", "heldout_books"):
        try:
            books(key)
        except FileNotFoundError as error:
            raise WorkflowError(f"data.{key}: {error}")
    for stage in search_stages():
        settings, scale = stage_search(stage), config["stages"][stage]["scale"]
        if settings["mode"] == "secondary":
            earlier = settings.get("base_stage")
            if earlier not in search_stages() or earlier == stage:
                raise WorkflowError(f"stages.{stage}.search.base_stage must name another search stage, got {earlier!r}")
            scale /= config["stages"][earlier]["scale"]
        if settings["mode"] == "recovery" and isinstance(settings["ceiling"], str):
            raise WorkflowError(f"stages.{stage}.search: a recovery search needs a reduced numeric ceiling")
        try:
            config_from_settings(settings, scale)
        except ValueError as error:
            raise WorkflowError(f"stages.{stage}.search: {error}")
    overlap = set(books("train_books")) & set(books("heldout_books"))
    if overlap:
        raise WorkflowError(f"data: held-out books also in train_books: {', '.join(sorted(overlap))}")


CORPUS = Path(workflow.basedir, config["data"]["corpus_dir"])


def books(key):
    """Book names (globs expanded, sorted) of data.train_books or data.heldout_books."""
    return list_books(CORPUS, config["data"][key])


def base_model_dir():
    return config["base_model"]["path"] or "results/base/model"


def pretrain_outputs():
    return [] if config["base_model"]["path"] else ["results/plots/pretrain_loss.png"]


def search_stages():
    return [name for name, stage in config["stages"].items() if "search" in stage]


def stage_search(stage):
    """The stage's search settings: the top-level `search:` block, halved P, N1, N2 above
    search.halve_above_scale (the paper's rule for windows over 512k), then the stage's own overrides."""
    settings = dict(config["search"])
    if config["stages"][stage]["scale"] > settings["halve_above_scale"]:
        for key in ("population", "mutations", "crossovers"):
            settings[key] = max(1, settings[key] // 2)
    return {**settings, **config["stages"][stage]["search"]}


def search_runs():
    """Search rules to generate, name -> (stage, settings): every search stage, plus its λ-only twin
    (n̂ fixed at 0) when search.ablation is on, for the paper's Table 11."""
    runs = {}
    for stage in search_stages():
        settings = stage_search(stage)
        runs[stage] = (stage, settings)
        if config["search"]["ablation"] and settings["n_hat"] != [0]:
            runs[f"{stage}_lambda"] = (stage, {**settings, "n_hat": [0]})
    return runs


def search_inputs(settings):
    inputs = {"model": base_model_dir(), "tokens": "results/data/fitness.npy"}
    if settings["mode"] == "secondary":
        inputs["base_factors"] = f"results/search/{settings['base_stage']}/factors.json"
    return inputs


def search_label(run):
    return "longrope_lambda" if run.endswith("_lambda") else "longrope"


def scaling_spec(method, scale, n_hat=0):
    """A RopeScaling as a plain dict (rule params must be plain data to be tracked)."""
    return {"method": method, "original_length": L0, "target_length": round(scale * L0), "n_hat": n_hat}


def stage_scales():
    return sorted({float(s["scale"]) for s in config["stages"].values()})


_check_config()
