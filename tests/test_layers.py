"""The package's layers (longrope/__init__.py, docs/architecture.md): each part imports only what its docstring
allows, nothing imports the tools, and nothing in the package imports snakemake."""
import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "longrope"
CORE = {"rope", "patching", "model", "factors"}
# part → the parts of longrope it may import (a part may always import its own modules)
ALLOWED = {
    "rope": set(),
    "patching": {"rope"},
    "model": {"rope", "patching"},
    "factors": {"rope"},
    "logs": set(),  # where a job's messages go; the scripts set it up, no part needs it
    "data": set(),
    "sources": set(),
    "parallelism": {"rope", "patching", "model"},
    "evaluation": CORE | {"data", "parallelism"},
    "search": CORE | {"data", "parallelism", "evaluation"},
    "training": {"rope", "patching", "model", "data", "parallelism"},
    "export": CORE | {"data", "evaluation"},
    "shipped": set(),  # the base model in data/base: its manifest and checksums
    "docs_blocks": set(),  # the README's and docs' include blocks of committed results
    "plan": {"data", "search", "parallelism", "training", "harness", "shipped"},
    "config_merge": {"plan"},  # the workflow's config over the embedded default; raises the plan's PlanError
    "harness": {"evaluation"},
    "tools": CORE | {"plan", "data", "parallelism", "evaluation", "search", "training", "export", "sources", "harness",
              "shipped", "docs_blocks", "tools"},
}


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def test_every_module_belongs_to_a_known_part():
    assert {part_of(p) for p in MODULES} == set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path):
    part = part_of(path)
    names = imported(path)
    assert not any(n == "snakemake" or n.startswith("snakemake.") for n in names)
    used = {n.split(".")[1] for n in names if n.startswith("longrope.")}
    assert used - {part} <= ALLOWED[part], f"{path.name} ({part}) imports {sorted(used - {part} - ALLOWED[part])}"
