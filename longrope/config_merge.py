"""The config a run uses: what the user gave over the embedded default (config/config.yaml), as Snakemake merges.

Before the Snakefile runs, Snakemake merges every --configfile and then --config into one mapping (later ones win,
mappings key by key); a module gets its `config:`. `with_default` merges that over the embedded default the same way,
as a `configfile:` directive would be merged with the command line, except where REPLACES says the user's block
replaces one of the default's whole. So `--config search='{generations: 3}'` changes one value of the default;
`typed_command_line` first types the nested --config values that Snakemake leaves strings.

May import: yaml, longrope.plan (PlanError). Not snakemake: the package runs without it.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

import yaml

from longrope.plan import PlanError

DEFAULT_CONFIG = Path("config", "config.yaml")  # relative to the workflow's folder
SCHEMA = Path("config", "schema.yaml")

# The one place where giving a key replaces a block of the default instead of merging into it: key given → block
# replaced (a path from the top; () is the whole default). A key the default has and a config lacks would leak into it.
REPLACES = {
    # A stage list is a recipe of its own, and every other block of the default is tuned to the default's stages and
    # toy model (the search budget, fine-tune steps, evaluation and passkey lengths, export.stage, pretrain, compute
    # dtype): merged, config/paper/*.yaml would inherit all of them and config/smollm2-gpu.yaml an export of a stage
    # it does not have. A config with its own stages stands alone, as every shipped config does.
    ("stages",): (),
    # Corpora by name: merged, the default's books would stay beside a config's own sources, and the default's split
    # of a source that no role then reads is an error.
    ("data", "sources"): ("data", "sources"),
}


def with_default(given: Mapping, workflow_dir: str | Path) -> dict:
    """`given` (Snakemake's `config` as the Snakefile finds it) merged over the workflow's embedded default."""
    workflow_dir = Path(workflow_dir)
    replaced = {block for key, block in REPLACES.items() if _holds(given, key)}
    if () in replaced:
        required = yaml.safe_load((workflow_dir / SCHEMA).read_text())["required"]
        missing = [key for key in required if key not in given]
        if missing:
            raise PlanError(f"config: gives its own stages, so it replaces the embedded default ({DEFAULT_CONFIG}) "
                            f"whole and needs {', '.join(missing)} of its own")
    default = yaml.safe_load((workflow_dir / DEFAULT_CONFIG).read_text())
    return _merge(default, given, replaced)


def _merge(default, given, replaced: set[tuple], path: tuple = ()):
    """Snakemake's update_config on copies: mappings merged key by key, anything else (a list, a value, null) given
    whole; a block whose path is in `replaced` is given whole too."""
    if path in replaced or not (isinstance(default, Mapping) and isinstance(given, Mapping)):
        return copy.deepcopy(given)
    merged = copy.deepcopy(dict(default))
    for key, value in given.items():
        merged[key] = _merge(default[key], value, replaced, (*path, key)) if key in default else copy.deepcopy(value)
    return merged


def typed_command_line(config: Mapping, command_line: Mapping) -> dict:
    """`config` with the values --config set (`command_line`, as Snakemake parsed them) typed as a YAML file types
    them: Snakemake reads a nested value (pretrain='{seed: 1}') with YAML's BaseLoader, so its scalars arrive as
    strings ('1'), which the schema refuses. Only a value still equal to the command line's is typed, so a module given
    part of the importer's config is left alone."""
    typed = copy.deepcopy(dict(config))
    for key, value in command_line.items():
        if isinstance(value, Mapping) and isinstance(typed.get(key), Mapping):
            typed[key] = typed_command_line(typed[key], value)
        elif key in typed and typed[key] == value:
            typed[key] = _typed(value)
    return typed


def _typed(value):
    if isinstance(value, Mapping):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    if isinstance(value, str):  # the tag a plain YAML scalar gets (int, float, bool, null, else str), not a document:
        loader = yaml.SafeLoader("")  # '*.txt' or 'a: b' stay strings
        try:
            return loader.construct_object(yaml.ScalarNode(loader.resolve(yaml.ScalarNode, value, (True, False)), value))
        finally:
            loader.dispose()
    return value


def _holds(config: Mapping, key: tuple) -> bool:
    for part in key:
        if not isinstance(config, Mapping) or part not in config:
            return False
        config = config[part]
    return True
