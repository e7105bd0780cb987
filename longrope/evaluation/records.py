"""Perplexity records, the artifact an evaluation job leaves: one row per measurement (study, model, method,
scale, n̂, length → perplexity with its interval) and one per scored window (its start and NLL, for pairing two
rows on identical windows; the id of its document when whole documents are scored). `PerplexityRecords` writes
them; `read_records` reads a set of them back for the tables.

May import: pandas, longrope.evaluation.perplexity (its Perplexity result).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

MEASUREMENT_KEYS = ["study", "model", "method", "scale", "n_hat", "length"]  # what one row of the tidy CSV measures


def unique_measurements(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """`frame` with each measurement once. Two search runs with the same model, scale and settings (a stage that
    repeats another's search to fine-tune differently, e.g. with a mixed window) evaluate the same factors on the
    same windows, so their rows agree and one is kept; rows that share a key but not the value cannot be told
    apart in the tables, which is an error."""
    groups = frame.groupby(keys, dropna=False)[value]
    clash = groups.nunique() > 1
    if clash.any():
        raise ValueError(f"different {value} values for the same {', '.join(keys)}: {clash[clash].index.tolist()[:3]} "
                         "(two search runs of one model at one scale found different factors; give them different "
                         "models or scales)")
    return frame.drop_duplicates(keys, ignore_index=True)


class PerplexityRecords:
    """The rows of one evaluation job, saved as <name>.csv and <name>.windows.csv."""

    def __init__(self):
        self.rows: list[dict] = []
        self.windows: list[dict] = []

    def add(self, key: dict, result, starts, seconds: float, documents=None) -> dict:
        """One measurement: `key` (MEASUREMENT_KEYS), a longrope.evaluation.perplexity.Perplexity, the windows'
        first-token offsets in the evaluation tokens, and when whole documents were scored (evaluation.documents)
        their ids, kept in a `document` column."""
        row = {**key, **result.summary(), "n_samples": result.n_samples, "tokens": result.tokens,
               "seconds": round(seconds, 3)}
        self.rows.append(row)
        windows = [{**key, "start": int(s), "nll": nll} for s, nll in zip(starts, result.unit_nll)]
        if documents is not None:
            windows = [{**window, "document": int(d)} for window, d in zip(windows, documents)]
        self.windows += windows
        return row

    def save(self, perplexity_csv: str | Path, windows_csv: str | Path) -> None:
        pd.DataFrame(self.rows).to_csv(perplexity_csv, index=False)
        pd.DataFrame(self.windows).to_csv(windows_csv, index=False)


def read_records(perplexity_csvs, windows_csvs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every measurement and every scored window of a set of evaluation jobs, each once (unique_measurements)."""
    perplexity = pd.concat([pd.read_csv(f) for f in perplexity_csvs], ignore_index=True)
    windows = pd.concat([pd.read_csv(f) for f in windows_csvs], ignore_index=True)
    return (unique_measurements(perplexity, MEASUREMENT_KEYS, "ppl"),
            unique_measurements(windows, MEASUREMENT_KEYS + ["start"], "nll"))
