"""What pyproject.toml promises: its commands resolve to tools' main(), its ranges admit the tested versions
(envs/constraints.txt), and a tool starts without the extras only some of its options need."""
import importlib
import re
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
CONSTRAINTS = ROOT / "envs" / "constraints.txt"


def pinned() -> dict[str, str]:
    """envs/constraints.txt as distribution name → version."""
    versions = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            versions[canonicalize_name(requirement.name)] = specifier.version
    return versions


def requirements() -> list[Requirement]:
    return [Requirement(line) for line in
            [*PROJECT["dependencies"], *(line for extra in PROJECT["optional-dependencies"].values() for line in extra)]]


@pytest.mark.parametrize("command", sorted(PROJECT["scripts"]))
def test_each_command_is_a_tools_main_that_reads_the_command_line(command, monkeypatch, capsys):
    """importlib.metadata sees the commands only after a reinstall; their targets are imported here instead."""
    module, function = PROJECT["scripts"][command].split(":")
    assert module.startswith("longrope.tools.") and function == "main"
    main = getattr(importlib.import_module(module), function)
    assert callable(main)
    monkeypatch.setattr(sys, "argv", [command, "--help"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0 and f"usage: {command}" in capsys.readouterr().out


def test_the_docs_name_only_declared_commands():
    text = "".join(page.read_text() for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))])
    named = set(re.findall(r"\blongrope-[a-z]+(?:-[a-z]+)*", text))
    assert named and named <= set(PROJECT["scripts"])


def test_every_range_is_a_range_that_admits_the_tested_version():
    versions = pinned()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert not any(s.operator in ("==", "===") for s in requirement.specifier), f"{requirement}: an exact pin"
        if requirement.specifier:
            assert name in versions, f"{name} has a range but no tested version in {CONSTRAINTS.name}"
            assert requirement.specifier.contains(versions[name]), f"{requirement} excludes the tested {versions[name]}"
    assert set(versions) == {canonicalize_name(r.name) for r in requirements()}


def test_deepspeed_stays_on_the_minor_line_whose_internals_the_package_imports():
    (deepspeed,) = {str(r.specifier) for r in requirements() if r.name == "deepspeed"}
    major, minor = map(int, pinned()["deepspeed"].split(".")[:2])
    assert set(deepspeed.split(",")) == {f">={major}.{minor}", f"<{major}.{minor + 1}"}


@pytest.mark.parametrize("module, argv, missing", [
    ("longrope.tools.export_model", ["--help"], ["gguf"]),
    # the argument check that refuses --gguf with --n-hat keep runs before anything needs gguf
    ("longrope.tools.export_model", ["--model", "m", "--factors", "f.json", "--tokenizer", "t", "--out", "o",
                                     "--gguf", "o.gguf", "--n-hat", "keep"], ["gguf"]),
    ("longrope.tools.engine_parity", ["--help"], ["gguf", "llama_cpp", "vllm"]),
], ids=["export --help", "export refused arguments", "engine-parity --help"])
def test_a_tool_parses_its_arguments_without_the_extras_its_options_need(module, argv, missing, monkeypatch, capsys):
    for name in missing:
        monkeypatch.setitem(sys.modules, name, None)  # what `import gguf` meets where the extra is not installed
    for name in [name for name in sys.modules if name == module or name.startswith("longrope.export.gguf")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, as in a new process
    monkeypatch.setattr(sys, "argv", [module, *argv])
    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).main()
    assert done.value.code == (0 if argv == ["--help"] else 2), capsys.readouterr().err
