"""The exported model's card: README.md in the export folder, written with huggingface_hub's ModelCard, saying what
the model is (base model, corpora), where its factors come from (each exported stage's search: mode, scale, budget,
fitness, n̂), which factor set a request gets in each engine (export.switch, export.n_hat), and the measured parity
(the stock-transformers check and, with export.parity, the cross-engine table).

May import: longrope.rope, longrope.factors, longrope.evaluation.report (Markdown tables).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from huggingface_hub import ModelCard, ModelCardData

from longrope.evaluation.report import markdown
from longrope.factors import FoundFactors
from longrope.rope import RopeScaling


@dataclass(frozen=True)
class CardFacts:
    """What the card states, gathered by the workflow (scripts/model_card.py) or a tool."""

    base: dict  # the base model: how it was made or where it comes from, and L0
    corpora: dict  # role (train, fitness, evaluation) -> the source's description
    stages: list[FoundFactors]  # the exported stages' searches, export stage first
    switch: str  # export.switch
    n_hat: str  # export.n_hat
    stock_check: pd.DataFrame  # results/export/stock_check.csv
    parity: str | None  # results/tables/engine_parity.md, None without export.parity
    gguf: str | None  # the GGUF's file name beside the folder, None without export.gguf


def model_card(facts: CardFacts, scaling: RopeScaling) -> ModelCard:
    """The card of a folder exported with `scaling` (its longrope_scaling.json)."""
    data = ModelCardData(library_name="transformers", tags=["longrope", "rope-scaling", "long-context"],
                         **({"base_model": facts.base["hub"]} if facts.base.get("hub") else {}))
    sections = [
        f"# LongRoPE-extended model: {scaling.original_length:,} → {scaling.target_length:,} tokens",
        f"Extended by the LongRoPE workflow (non-uniform RoPE rescale factors found by search). Switch policy "
        f"`export.switch: {facts.switch}`, n̂ policy `export.n_hat: {facts.n_hat}`.",
        "## Base model\n\n" + _bullets(facts.base),
        "## Corpora\n\n" + "\n".join(f"- **{role}**: {_inline(spec)}" for role, spec in facts.corpora.items()),
        "## Where the factors come from\n\n" + _provenance(facts.stages, scaling),
        "## Which factor set each engine gives a request\n\n" + _engines(facts, scaling),
        "## Parity (measured on this folder)\n\n" + _parity(facts),
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


def write_model_card(folder: str | Path, facts: CardFacts, scaling: RopeScaling) -> None:
    model_card(facts, scaling).save(Path(folder, "README.md"))


def _bullets(spec: dict) -> str:
    return "\n".join(f"- {key}: {_inline(value) if isinstance(value, dict) else value}" for key, value in spec.items())


def _inline(spec: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in spec.items() if value not in (None, [], {}))


def _provenance(stages: list[FoundFactors], scaling: RopeScaling) -> str:
    rows = [{"stage": found.stage, "mode": found.search.get("mode"), "scale": f"{found.scale:g}×",
             "searched on": found.model, "fitness": found.search.get("fitness"),
             "budget (P, generations)": f"{found.search.get('population')}, {found.search.get('generations')}",
             "candidates scored": found.evaluations, "n̂": found.scaling.n_hat, "dtype": found.dtype}
            for found in stages]
    short = ("searched by the recovery stage, used up to the switch length"
             if scaling.short_factors else "none: every length gets the long set")
    return (markdown(pd.DataFrame(rows).set_index("stage")) + f"\n\nLong set: λ from {min(scaling.factors):g} to "
            f"{max(scaling.factors):g} over {len(scaling.factors)} frequency pairs; short set: {short}; switch length "
            f"{scaling.switch_length:,}; attention factor {scaling.attention_scale:.6g}; n̂ = {scaling.n_hat}.")


def _engines(facts: CardFacts, scaling: RopeScaling) -> str:
    if facts.switch == "long" or not scaling.short_factors:
        pick = {engine: "the long set at every length" for engine in ("transformers", "longrope", "vllm", "llama")}
    else:
        n = f"{scaling.switch_length:,}"
        pick = {"transformers": f"per sequence: the short set up to {n} tokens, the long set beyond",
                "longrope": f"per sequence: the short set up to {n} tokens, the long set beyond",
                "vllm": "once at start-up: the long set when max_model_len exceeds the switch length (its default)",
                "llama": f"once per context: the short set when n_ctx, rounded up to a multiple of 256, is at most {n}"}
    exact = "n̂ = 0: the same model" if scaling.n_hat == 0 else f"drops n̂ = {scaling.n_hat}: a different model"
    rows = [("stock transformers (`AutoModelForCausalLM`)", "config.json `rope_parameters`", pick["transformers"],
             exact),
            ("this package (`longrope.model.load_model`)", "longrope_scaling.json", pick["longrope"], "exact"),
            ("vLLM", "config.json `rope_scaling`, short/long mscale", pick["vllm"],
             exact if facts.n_hat == "zero" else "not written: no vLLM keys in config.json")]
    if facts.gguf:
        rows.append((f"llama.cpp (`{facts.gguf}`)", "rope_factors_long / rope_factors_short", pick["llama"], exact))
    else:
        rows.append(("llama.cpp", "no GGUF written (export.gguf)", "", ""))
    table = markdown(pd.DataFrame(rows, columns=["engine", "reads", "factor set", "n̂"]).set_index("engine"))
    if facts.n_hat == "keep":
        table += ("\n\n**For this package's loader only** (`export.n_hat: keep`): the factors may keep the first n̂ "
                  "positions at the original RoPE, which no other engine runs, so no GGUF and no vLLM keys were "
                  "written. Load it with `longrope.model.load_model`.")
    return table


def _parity(facts: CardFacts) -> str:
    check = markdown(facts.stock_check.set_index("length").map(lambda v: f"{v:.3g}" if isinstance(v, float) else v))
    text = f"Stock transformers against this package's loader, random ids (results/export/stock_check.csv):\n\n{check}"
    if facts.parity is None:
        return text + "\n\nNo cross-engine table: export.parity is off."
    return text + ("\n\nHeld-out windows through each engine, relative to stock transformers "
                   f"(results/tables/engine_parity.md):\n\n{facts.parity}")
