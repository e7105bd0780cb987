"""Searched factors, the artifact a search stage leaves: factors.json (the scaling and how it was found) and
factors.csv (one λ per line, the searched set: the short set for a recovery search, as the official code's CSVs).
Every reader — fine-tuning, evaluation, plots, export, tools — goes through `FoundFactors.load` or `load_factors`.
It sits beside the RoPE core because every layer passes it on: search writes it, training, evaluation and export
read it.

May import: longrope.rope.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from longrope.rope import RopeScaling


@dataclass(frozen=True)
class FoundFactors:
    stage: str  # the search run's name (128k, 128k_lambda, short, …)
    scaling: RopeScaling  # what the model runs with: the long set, n̂, and after a recovery search the short set
    scale: float
    fitness_ppl: float
    fitness_samples: int
    evaluations: int
    cache_hits: int
    search: dict  # the run's settings, ceiling_value included
    model: str  # the folder searched on
    critical_dimension: int
    dtype: str  # the compute dtype the fitness ran in, as resolved on the machine that ran it
    fitness_documents: dict[str, list[int]] | None = None  # fitness length -> document ids, with search.documents
    tokens: str | None = None  # the fitness token store searched on (results/data/stores/…)
    window_evaluations: int | None = None  # (candidate, window) scores the search spent; None in older records

    @property
    def original_length(self) -> int:
        return self.scaling.original_length

    @property
    def target_length(self) -> int:
        """The stage's length, scale × L0. A recovery search's scaling targets the earlier stage's length instead:
        its short set serves up to this one."""
        return round(self.scale * self.original_length)

    @property
    def searched(self) -> tuple[float, ...]:
        """The factor set the search chose: the short set for a recovery search, else the long set."""
        return self.scaling.short_factors or self.scaling.factors

    def save(self, json_path: str | Path, csv_path: str | Path) -> None:
        record = asdict(self)
        if self.fitness_documents is None:  # seeded windows: the record stays as it was before documents existed
            del record["fitness_documents"]
        record.update(scaling=self.scaling.to_dict(), attention_factor=self.scaling.attention_scale,
                      original_length=self.original_length, target_length=self.target_length)
        Path(json_path).write_text(json.dumps(record, indent=2))
        np.savetxt(csv_path, np.asarray(self.searched))

    @classmethod
    def load(cls, json_path: str | Path) -> FoundFactors:
        record = json.loads(Path(json_path).read_text())
        missing = sorted({"stage", "scaling", "dtype"} - set(record))
        if missing:
            raise ValueError(f"{json_path} is not a factors.json of this workflow (missing {', '.join(missing)})")
        for derived in ("attention_factor", "original_length", "target_length"):
            record.pop(derived, None)
        return cls(**{**record, "scaling": RopeScaling.from_dict(record["scaling"])})


def load_factors(json_path: str | Path) -> RopeScaling:
    """The scaling a factors.json carries: a search stage's, or one written by hand with only a "scaling" entry
    (a RopeScaling as a dict), e.g. factors brought from another implementation."""
    record = json.loads(Path(json_path).read_text())
    if "scaling" not in record:
        raise ValueError(f"{json_path} has no 'scaling' entry (a RopeScaling as a dict)")
    return RopeScaling.from_dict(record["scaling"])
