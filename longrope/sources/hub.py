"""Models and datasets from the Hugging Face hub, through `huggingface_hub` into its standard cache (HF_HOME,
HF_TOKEN and HF_HUB_OFFLINE are honoured as everywhere else).

`fetch` runs in the workflow's fetch rules, on the submitting node (compute nodes of many clusters have no
internet): it resolves the requested revision to a commit, downloads the files matching the patterns and writes a
manifest naming the commit and the files. Jobs on compute nodes then find the same snapshot in the cache with
`snapshot(manifest)`, which never touches the network.

Model weights come as safetensors only: a repository offering only pickled weights (.bin) is refused.
"""
from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

# What a causal LM needs to load with transformers, without pickles.
MODEL_FILES = ("*.json", "*.safetensors", "tokenizer.model", "*.txt", "*.jinja")


class HubError(RuntimeError):
    """A repository, revision or file that cannot be had: the message names the config key."""


def fetch(repo: str, repo_type: str, revision: str, patterns: list[str], key: str, manifest: str | Path,
          required: list[str] | None = None) -> dict:
    """Download the files of `repo` at `revision` matching `patterns` into the hub cache; write and return the
    manifest. Each of `required` (default: every pattern) must match a file."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo, repo_type=repo_type, revision=revision, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        raise HubError(f"{key}: {repo_type} '{repo}' at revision '{revision}' is not in the hub cache "
                       f"({_cache_dir()}) and the hub cannot be reached"
                       f"{' (HF_HUB_OFFLINE is set)' if _offline() else ''}") from None
    except HfHubHTTPError as error:
        raise HubError(f"{key}: cannot fetch {repo_type} '{repo}' at revision '{revision}': {error}") from None
    # Offline, the cache answers with the whole snapshot, whatever the patterns: keep what they match.
    files = sorted(name for name in (str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
                   if any(fnmatch.fnmatch(name, pattern) for pattern in patterns))
    for pattern in patterns if required is None else required:
        if not fnmatch.filter(files, pattern):
            raise HubError(f"{key}: no file of {repo_type} '{repo}' at revision '{revision}' matches '{pattern}'")
    record = {"repo": repo, "repo_type": repo_type, "revision": revision, "commit": folder.name,
              "patterns": list(patterns), "files": files}
    Path(manifest).parent.mkdir(parents=True, exist_ok=True)
    Path(manifest).write_text(json.dumps(record, indent=2) + "\n")
    return record


def snapshot(manifest: str | Path) -> Path:
    """The cached snapshot folder of a fetched repository, at the manifest's commit, from the cache alone."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    record = json.loads(Path(manifest).read_text())
    try:
        folder = snapshot_download(record["repo"], repo_type=record["repo_type"], revision=record["commit"],
                                   allow_patterns=record["patterns"], local_files_only=True)
    except LocalEntryNotFoundError:
        raise HubError(f"{record['repo_type']} '{record['repo']}' at commit {record['commit']} (from {manifest}) "
                       f"is not in this machine's hub cache ({_cache_dir()}): is HF_HOME shared with the node that "
                       f"fetched it?") from None
    return Path(folder)


def fetch_model(repo: str, revision: str, key: str, out: str | Path, manifest: str | Path) -> dict:
    """A model's config, tokenizer and safetensors weights, fetched into the cache and linked into the folder
    `out` (the cache's files are not copied)."""
    record = fetch(repo, "model", revision, list(MODEL_FILES), key, manifest, required=["config.json",
                                                                                       "*.safetensors"])
    folder, out = snapshot(manifest), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in record["files"]:
        link = out / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((folder / name).resolve())
    return record


def _cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def source_files(source, inputs) -> list[Path]:
    """The files of a corpus source (longrope.data.sources.Source) that a job reads: its rule's `files` input, or
    those of the fetched snapshot its `manifest` input names."""
    if source.kind == "hub":
        return source.files(snapshot(inputs.manifest))
    return [Path(path) for path in inputs.files]
