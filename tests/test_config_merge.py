"""--configfile and --config over the embedded default (longrope.config_merge), in-process and through the Snakefile."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from snakemake.cli import parse_config
from snakemake.common.configfile import load_configfile

from conftest import ROOT, snakemake_cmd
from longrope.config_merge import typed_command_line, with_default
from longrope.plan import Plan

DEFAULT = ROOT / "config" / "config.yaml"
TEST = ROOT / "config" / "test.yaml"
SHIPPED = sorted({*ROOT.glob("config/*.yaml"), *ROOT.glob("config/paper/*.yaml")} - {DEFAULT, ROOT / "config" / "schema.yaml"})


def validated(config: dict) -> dict:
    return Plan.load(config, ROOT, require_files=False).config


def snakefile_config(tmp_path: Path, *args) -> dict:
    """The validated config the Snakefile ends up with for these arguments: a Snakefile that includes it writes its
    `config` down during a dry run, which must succeed."""
    (tmp_path / "Snakefile").write_text(
        f'include: "{ROOT / "Snakefile"}"\n\n'
        "import json\nfrom pathlib import Path\n\n"
        'Path("config.json").write_text(json.dumps(config))\n')
    done = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-n", "--directory", str(tmp_path), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    return json.loads((tmp_path / "config.json").read_text())


def as_json(config: dict) -> dict:
    return json.loads(json.dumps(config))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: str(path.relative_to(ROOT)))
def test_a_shipped_config_given_with_configfile_is_the_file_alone(path):
    """Each has its own stages, so none inherits the default's blocks (merged, config/paper/*.yaml would get its toy
    evaluation lengths, passkey, export and pretrain)."""
    assert validated(with_default(load_configfile(path), ROOT)) == validated(load_configfile(path))


def test_own_sources_replace_the_default_books():
    """Merged key by key, the default's `heldout` would stay beside them, its split read by no role: an error."""
    data = load_configfile(TEST)["data"]
    assert validated(with_default({"data": data}, ROOT))["data"]["sources"].keys() == data["sources"].keys()


def test_command_line_scalars_are_typed_as_a_yaml_file_types_them():
    command_line = parse_config(['search={samples: 2, mutation_prob: 0.5, ablation: false, n_hat: [0, 2]}',
                                 'data={sources: {local: {files: ["*.txt"]}}}', 'export={check_lengths: null}'])
    assert command_line["search"]["samples"] == "2"  # what Snakemake hands over: strings
    given = {**command_line, "finetune": {"steps": "3"}}  # not from the command line (a module's own): left as is
    assert typed_command_line(given, command_line) == {
        "search": {"samples": 2, "mutation_prob": 0.5, "ablation": False, "n_hat": [0, 2]},
        "data": {"sources": {"local": {"files": ["*.txt"]}}}, "export": {"check_lengths": None},
        "finetune": {"steps": "3"}}


@pytest.mark.parametrize("override, block, key, value", [
    ("pretrain={seed: 1}", "pretrain", "seed", 1),
    ("search={generations: 3}", "search", "generations", 3),
    ("evaluation={lengths: [128, 256, 512]}", "evaluation", "lengths", [128, 256, 512]),
])
def test_config_on_the_command_line_changes_one_value_of_the_default(tmp_path, override, block, key, value):
    expected = validated(load_configfile(DEFAULT))
    assert expected[block][key] != value
    expected[block][key] = value
    assert snakefile_config(tmp_path, "--config", override) == as_json(expected)


def test_config_on_the_command_line_changes_one_value_of_a_configfile(tmp_path):
    expected = validated(load_configfile(TEST))
    assert expected["search"]["generations"] != 3
    expected["search"]["generations"] = 3
    assert snakefile_config(tmp_path, "--configfile", str(TEST), "--config", "search={generations: 3}") == as_json(
        expected)


@pytest.mark.parametrize("override, message", [
    ("pretrain={sede: 1}", "pretrain: Additional properties are not allowed ('sede' was unexpected)"),
    ("stages={128k: {scale: 2, search: {}}}", "config: gives its own stages, so it replaces the embedded default "
                                               "(config/config.yaml) whole and needs data, base_model, evaluation"),
])
def test_a_bad_value_on_the_command_line_names_the_real_problem(tmp_path, override, message):
    done = subprocess.run(snakemake_cmd("-n", "--config", override, "--directory", str(tmp_path)), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and message in done.stdout + done.stderr, (done.stdout + done.stderr)[-2000:]
    assert "is a required property" not in done.stdout + done.stderr
