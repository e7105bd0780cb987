"""The plan: a workflow config validated once and turned into typed, frozen settings.

`Plan.load(config, workflow_dir)` fills the schema's defaults (config/schema.yaml, as `snakemake.utils.validate`
does), merges each stage's search and fine-tune settings over the top-level blocks, resolves paths relative to the
workflow, and runs every cross-key check the schema cannot express; each error names its key. The Snakefile builds
it once (rules/common.smk) and hands its pieces to rules as plain data; scripts rebuild the piece they get with
`SearchSettings.from_dict` / `FinetuneSettings.from_dict`, which re-merge and re-default nothing.

    settings.py  one frozen dataclass per concern, the paths and constants rules share, PlanError
    build.py     the schema (defaults filled), the base model, each stage's settings merged over the top level
    checks.py    the cross-key checks the schema cannot express
    graph.py     Plan: the stage graph, data roles and stores, the subjects to evaluate, jobs' resources and launchers

The compute dtype stays the config's request ('auto', 'float32', 'bfloat16'): it is resolved by
`longrope.model.compute_dtype` on the machine that runs the job, because a cluster's submitting node may have no GPU.

May import: yaml, jsonschema, longrope.search.engine (SearchConfig validates the search settings),
longrope.parallelism.memory (the heads check), longrope.training.deepspeed_config, longrope.data.sources,
longrope.harness.suites, longrope.shipped. No torch.
"""
from longrope.plan.graph import Plan
from longrope.plan.settings import (ABLATION_TWINS, CHAIN_PRIORITY, CONVERTED_BASE, LLAMA_CPP_CONTEXT_STEP,
                                    SOURCE_MANIFESTS, STORES, TOKENIZER, BaseModel, ExportSettings, FinetuneSettings,
                                    GgufSettings, ParitySettings, PlanError, SearchRun, SearchSettings, Stage, Subject)

__all__ = ["ABLATION_TWINS", "CHAIN_PRIORITY", "CONVERTED_BASE", "LLAMA_CPP_CONTEXT_STEP", "SOURCE_MANIFESTS", "STORES",
           "TOKENIZER", "BaseModel", "ExportSettings", "FinetuneSettings", "GgufSettings", "ParitySettings", "Plan",
           "PlanError", "SearchRun", "SearchSettings", "Stage", "Subject"]
