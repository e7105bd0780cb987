"""Which RoPE scalings an evaluation job runs: decided here once, for perplexity and retrieval alike.

May import: longrope.rope, longrope.model, longrope.factors.
"""
from __future__ import annotations

from pathlib import Path

from longrope.model import saved_scaling
from longrope.rope import RopeScaling
from longrope.factors import load_factors


def subject_scalings(specs: list, factors: str | None, label: str,
                     model_folder: str | Path) -> list[tuple[str, RopeScaling]]:
    """(label, scaling) in the order the job evaluates them: the rule's baseline specs (RopeScaling dicts), then a
    search's factors file under `label`; given neither, the scaling saved with the model (a fine-tuned model: the
    one it was trained with, mixed window included)."""
    scalings = [(name, RopeScaling.from_dict(spec)) for name, spec in specs]
    if factors:
        scalings.append((label, load_factors(factors)))
    if not scalings:
        saved = saved_scaling(model_folder)
        if saved is None:
            raise ValueError(f"{model_folder} carries no RoPE scaling and the rule names none to evaluate")
        scalings.append((label, saved))
    return scalings


def subject_scaling(spec: dict | None, factors: str | None, label: str, model_folder: str | Path) -> RopeScaling:
    """The one scaling a retrieval or harness subject runs with: its baseline spec, its search's factors, or the one
    saved with its model."""
    (_, scaling), = subject_scalings([(label, spec)] if spec is not None else [], factors, label, model_folder)
    return scaling
