"""This workflow imported as a Snakemake module by another workflow's Snakefile, in another folder."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, snakemake_cmd
from test_workflow import scheduled

IMPORTER = f"""module longrope:
    snakefile: "{ROOT / "Snakefile"}"
    config: config

use rule * from longrope as longrope_*
"""


@pytest.mark.parametrize("config_args", [(), ("--configfile", str(ROOT / "config" / "test.yaml"))],
                         ids=["embedded default", "test.yaml"])
def test_imported_as_a_module_it_schedules_what_it_schedules_alone(tmp_path, config_args):
    alone, importer = tmp_path / "alone", tmp_path / "importer"
    alone.mkdir(), importer.mkdir()
    (importer / "Snakefile").write_text(IMPORTER)
    by_itself = scheduled(subprocess.run(snakemake_cmd("-n", *config_args, "--directory", str(alone)), cwd=alone,
                                         capture_output=True, text=True, timeout=300))
    # the importer's config (empty, or config/test.yaml) is the module's
    imported = scheduled(subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-n", "longrope_all",
                                         *config_args, "--directory", str(importer)],
                                        cwd=importer, capture_output=True, text=True, timeout=300))
    # the embedded default starts from the shipped base, found through the module's own folder (its loss plotted);
    # test.yaml pretrains its own
    assert ("longrope_pretrain_base" in imported) == bool(config_args)
    assert "longrope_plot_pretrain_loss" in imported
    assert imported == {f"longrope_{rule}" for rule in by_itself}
