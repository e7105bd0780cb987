# Corpora in (longrope.data.sources), token stores out: a hub source is fetched once on the submitting node, each
# role's share of its source is tokenized into a store that every later job memory-maps.
localrules: fetch_source, tokenizer


rule fetch_source:
    """The files of a hub dataset at a pinned revision, into the hub cache; the manifest records the commit."""
    output:
        f"{SOURCE_MANIFESTS}/{{source}}.json",
    params:
        source=lambda w: PLAN.sources[w.source],
    wildcard_constraints:
        source="|".join(name for name, source in PLAN.sources.items() if source.kind == "hub") or "^$",
    log:
        "logs/fetch_source/{source}.log",
    script:
        "../scripts/fetch_source.py"


rule tokenizer:
    input:
        unpack(tokenizer_inputs),
    output:
        directory(TOKENIZER),
    params:
        kind=config["data"]["tokenizer"]["kind"],
        vocab_size=config["data"]["tokenizer"].get("vocab_size"),
        selection=PLAN.selection("train"),
    log:
        "logs/tokenizer.log",
    benchmark:
        "benchmarks/tokenizer.tsv"
    script:
        "../scripts/train_tokenizer.py"


rule token_store:
    """One role's share of its source, tokenized into a memory-mapped store (longrope.data.tokens)."""
    input:
        unpack(store_inputs),
        tokenizer=TOKENIZER,
    output:
        directory(f"{STORES}/{{store}}"),
    params:
        selection=lambda w: STORE_SELECTIONS[w.store],
    wildcard_constraints:
        store="|".join(STORE_SELECTIONS),
    threads: config["data"]["threads"]
    priority: CHAIN_PRIORITY  # seconds of work that a stage search may wait on
    log:
        "logs/token_store/{store}.log",
    benchmark:
        "benchmarks/token_store/{store}.tsv"
    script:
        "../scripts/tokenize_corpus.py"
