"""The workflow's software: one conda environment created by hand (envs/longrope.yaml), no rule with `conda:`."""
import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions

import yaml

from conftest import ROOT, snakemake_cmd

ENVIRONMENT = ROOT / "envs" / "longrope.yaml"
# Imported by the package, installed apart from it: vLLM brings its own torch (docs/engines.md).
INSTALLED_APART = {"vllm"}
# Never imported here, loaded by transformers when convert_gguf dequantizes a GGUF base model (pyproject's gguf extra).
LOADED_BY_TRANSFORMERS = {"accelerate"}
SOFTWARE_LINT = "Specify a conda environment or container for each rule."


def test_no_rule_declares_a_conda_environment():
    """`--sdm conda` would deploy a copy of the environment file under .snakemake/conda/, where its `-e ..` is not
    this checkout."""
    for path in [ROOT / "Snakefile", *sorted(ROOT.glob("rules/*.smk"))]:
        assert not re.search(r"^\s*conda:", path.read_text(), re.MULTILINE), path


def test_lint_finds_nothing_but_the_missing_conda_environments():
    done = subprocess.run(snakemake_cmd("--lint", "--configfile", str(ROOT / "config" / "test.yaml")), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    text = done.stdout + done.stderr
    assert "Lints for rule" in text and "Lints for snakefile" not in text, text[-3000:]
    assert set(re.findall(r"^    \* (.+):$", text, re.MULTILINE)) == {SOFTWARE_LINT}, text[-3000:]


def distribution(requirement: str) -> str:
    """A requirement's distribution name, normalized as pip compares them ('lm-eval[hf]==1' → 'lm-eval')."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group()).lower()


def third_party_imports() -> set[str]:
    """Top-level modules the scripts import, directly or through the package (lazy imports included)."""
    modules, seen, todo = set(), set(), sorted(ROOT.glob("scripts/*.py"))
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
                     if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                if top == "longrope":  # a module or a package of it; `from longrope.x import name` may be either
                    where = ROOT.joinpath(*name.split("."))
                    todo += [file for file in (where.with_suffix(".py"), where / "__init__.py") if file.is_file()]
                elif top not in sys.stdlib_module_names:
                    modules.add(top)
    return modules


def test_the_environment_installs_this_checkout_with_the_extras_the_scripts_import():
    environment = yaml.safe_load(ENVIRONMENT.read_text())
    (pip,) = [entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict)]
    (editable,) = [line for line in pip if line.startswith("-e ")]
    path, extras = re.fullmatch(r"-e (\S+?)\[([\w,-]+)\]", editable).groups()
    assert (ENVIRONMENT.parent / path).resolve() == ROOT  # conda runs pip in the environment file's folder
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = {distribution(requirement) for requirement in project["dependencies"]}
    for extra in extras.split(","):
        installed |= {distribution(requirement) for requirement in project["optional-dependencies"][extra]}
    providers = packages_distributions()
    imported = third_party_imports()
    assert {"lm_eval", "llama_cpp", "gguf", "deepspeed"} <= imported  # the walk reaches the lazy imports
    missing = {module for module in (imported | LOADED_BY_TRANSFORMERS) - INSTALLED_APART
               if not installed & {distribution(name) for name in providers.get(module, [])}}
    assert not missing, f"{ENVIRONMENT.name} installs nothing that provides {sorted(missing)}"
    assert "slurm" in extras.split(",")  # the executor `snakemake --profile slurm` loads
