localrules: tokenizer, token_ids


rule tokenizer:
    input:
        unpack(tokenizer_inputs),
    output:
        directory(TOKENIZER),
    params:
        kind=config["data"]["tokenizer"]["kind"],
        vocab_size=config["data"]["tokenizer"].get("vocab_size"),
    log:
        "logs/tokenizer.log",
    benchmark:
        "benchmarks/tokenizer.tsv"
    conda:
        ENV
    script:
        "../scripts/train_tokenizer.py"


rule token_ids:
    input:
        tokenizer=TOKENIZER,
        train=book_files("train_books"),
        heldout=book_files("heldout_books"),
    output:
        train=directory("results/data/train"),
        fitness=directory("results/data/fitness"),
        evaluation=directory("results/data/evaluation"),
    params:
        fitness_fraction=config["data"]["fitness_fraction"],
    threads: config["data"]["threads"]
    log:
        "logs/token_ids.log",
    benchmark:
        "benchmarks/token_ids.tsv"
    conda:
        ENV
    script:
        "../scripts/tokenize_corpus.py"
