"""LongRoPE: extend a pretrained LLM's context window by searching non-uniform RoPE rescale factors.

The package every workflow script uses, in layers; a module imports only from the layers above it:

    rope.py        RoPE scalings: a name → function registry (none, pi, ntk, dynamic_ntk, yarn, longrope)
    patching.py    the one module that patches a model: rotary swap (verified), MLP tiling, attention kernel,
                   sequence split
    model.py       checkpoints: load with exactly one scaling applied, save with the scaling; dtype, attention, NLL
    factors.py     searched factors, the artifact every stage passes on (factors.json / factors.csv)
    logs.py        where a job's messages go: the rule's log (the scripts), for the package's "longrope" loggers
    plan/          the workflow config, validated once, as typed frozen settings (no torch): settings, build,
                   checks, the graph
    shipped.py     the base model shipped in data/base: its manifest, recipe digest and checksums
    docs_blocks.py the README's and docs' include blocks: figures rendered from committed results files
    data/          corpora as sources per role, tokenizers, token stores, windows, fine-tuning chunks, prompts
    parallelism/   Ulysses sequence parallelism and the memory planner
    search/        the evolution engine, fitness and its windows
    training/      the training loop, plain torch or DeepSpeed
    evaluation/    perplexity, retrieval, intervals, records, tables, the paper's claims and plots
    harness/       lm-evaluation-harness suites (Table 8, RULER, LongBench) on patched models, and their tables
    export/        the extended model for each engine: switch policy and stock-transformers parity, vLLM keys,
                   the GGUF for llama.cpp, and the same windows through every engine (parity)
    sources/       where models and corpora come from: the hub (cache + manifests), pinned wheels, GGUF conversion
    tools/         measuring and planning tools (python -m longrope.tools.<name>; those a user runs also as
                   longrope-* commands, pyproject's [project.scripts]); they print their results; nothing imports them

docs/architecture.md draws the data flow and says where a new scaling, fitness, evaluation or export goes.
Nothing in the package imports snakemake. The package logs through logging.getLogger(__name__) rather than
printing; longrope.logs is the one set-up of it, which the scripts call.
"""
