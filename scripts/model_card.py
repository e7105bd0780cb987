"""The export folder users ship: the checkpoint's files (hard links where the file system allows) and README.md, its
model card (longrope.export.card): base model, corpora, the factors' provenance, what each engine does with the two
factor sets, and the measured parity."""
import os
import shutil
from pathlib import Path

import pandas as pd

from longrope.export.card import CardFacts, write_model_card
from longrope.factors import FoundFactors
from longrope.logs import to_rule_log
from longrope.model import saved_scaling

to_rule_log(snakemake.log[0])

p = snakemake.params
checkpoint, out = Path(snakemake.input.model), Path(snakemake.output.model)
facts = CardFacts(base=p.provenance["base"], corpora=p.provenance["corpora"],
                  stages=[FoundFactors.load(path) for path in snakemake.input.factors], switch=p.switch, n_hat=p.n_hat,
                  stock_check=pd.read_csv(snakemake.input.check),
                  parity=Path(snakemake.input.parity[0]).read_text() if snakemake.input.parity else None,
                  gguf=Path(snakemake.input.gguf[0]).name if snakemake.input.gguf else None)


def link_or_copy(source, destination):
    """A hard link (no second copy of a 7B model's weights), or a copy across file systems."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


# Snakemake's marker for a directory output stays out: a hard-linked one would be touched with this folder's and make
# the checkpoint look newer than everything built from it.
shutil.copytree(checkpoint, out, copy_function=link_or_copy, ignore=shutil.ignore_patterns(".snakemake_timestamp"))
write_model_card(out, facts, saved_scaling(out))
print(f"{out}: {', '.join(sorted(f.name for f in out.iterdir()))}")
