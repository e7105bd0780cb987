"""Corpora as sources (longrope.data.sources) and the hub (longrope.sources.hub), offline: local parquet, jsonl,
arrow and txt files written here, and a hub cache laid out here as huggingface_hub lays it out."""
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from longrope.data.sources import Selection, Source, SourceError, documents_of, read_documents
from longrope.sources.hub import HubError, fetch, fetch_model, snapshot

TEXTS = ["The first document.", "A second, longer document about nothing.", "Third.", "Fourth and last."]


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative file paths are relative to the working directory


def files_source(tmp_path, files, **spec) -> Source:
    return Source.from_config("corpus", {"files": files, **spec}, ROOT)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    lines = "".join(json.dumps(row) + "\n" for row in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(lines)
    else:
        path.write_text(lines)


# -- reading local files ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["docs.parquet", "docs.jsonl", "docs.jsonl.gz", "docs.arrow"])
def test_every_row_format_reads_the_same_documents_in_order(tmp_path, name):
    path = tmp_path / name
    rows = [{"text": text, "id": i} for i, text in enumerate(TEXTS)]
    if name.endswith(".parquet"):
        pd.DataFrame(rows).to_parquet(path)
    elif name.endswith(".arrow"):
        import pyarrow as pa

        table = pa.Table.from_pylist(rows)
        with pa.ipc.new_stream(path, table.schema) as writer:
            writer.write_table(table)
    else:
        write_jsonl(path, rows)
    source = files_source(tmp_path, [name])
    assert list(read_documents(source, source.files())) == TEXTS


def test_a_txt_folder_is_one_document_per_file_in_sorted_order(tmp_path):
    (tmp_path / "texts").mkdir()
    for i, text in enumerate(TEXTS):
        if i % 2:
            with gzip.open(tmp_path / "texts" / f"{i}.txt.gz", "wt", encoding="utf-8") as f:
                f.write(text)
        else:
            (tmp_path / "texts" / f"{i}.txt").write_text(text)
    source = files_source(tmp_path, ["texts/*.txt", "texts/*.txt.gz"])
    assert list(read_documents(source, source.files())) == [TEXTS[0], TEXTS[2], TEXTS[1], TEXTS[3]]


def test_a_custom_text_field_and_empty_documents(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"body": "one"}, {"body": ""}, {"body": "two"}])
    source = files_source(tmp_path, ["a.jsonl"], text_field="body")
    assert list(read_documents(source, source.files())) == ["one", "two"]


@pytest.mark.parametrize("content, message", [
    ([{"body": "no text field"}],
     r"data.sources.corpus.text_field: .*bad.jsonl has no field 'text' \(row 0 has body\)"),
    ([{"text": 7}], r"'text' in .*bad.jsonl, row 0, is int, not text"),
    (b'{"text": "ok"}\n{"text": "\xff\xfe"}\n', r"data.sources.corpus: .*bad.jsonl is not UTF-8 text"),
    (b'{"text": "ok"\n', r"data.sources.corpus: cannot read .*bad.jsonl as json"),
])
def test_bad_rows_are_one_error_naming_the_key_and_the_file(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content) if isinstance(content, bytes) else write_jsonl(path, content)
    source = files_source(tmp_path, ["bad.jsonl"])
    with pytest.raises(SourceError, match=message):
        list(read_documents(source, source.files()))


def test_patterns_that_match_nothing_and_unknown_formats_are_named(tmp_path):
    with pytest.raises(SourceError, match=r"data.sources.corpus.files: no file in .* matches 'missing/\*.parquet'"):
        files_source(tmp_path, ["missing/*.parquet"]).files()
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(SourceError, match="cannot tell the format of notes.md; set data.sources.corpus.format"):
        files_source(tmp_path, ["notes.md"]).files()
    assert files_source(tmp_path, ["notes.md"], format="txt").files() == [Path("notes.md")]
    for spec in ({"books": ["a"], "files": ["b"]}, {"hub": "org/name"}):
        with pytest.raises(SourceError, match="give books, files, or hub with the files to take from it"):
            Source.from_config("corpus", spec, ROOT)


# -- roles sharing a source --------------------------------------------------------------------------


def shared(split: dict, kind: str = "books") -> Source:
    return Source.from_config("heldout", {"books": ["austen-emma"], "split": split}, ROOT)


def test_a_text_split_cuts_each_document_into_disjoint_complete_shares():
    source = shared({"by": "text", "fitness": 0.3, "evaluation": 0.7})
    ids = np.arange(1000)
    fitness, evaluation = (Selection(source, role).cut(ids) for role in ("fitness", "evaluation"))
    assert len(fitness) == 300 and np.array_equal(np.concatenate([fitness, evaluation]), ids)
    assert all(Selection(source, role).takes_document(i) for role in ("fitness", "evaluation") for i in range(50))


def test_a_document_split_gives_each_document_to_one_role_the_same_way_every_time():
    source = shared({"train": 0.8, "fitness": 0.1, "evaluation": 0.1})
    roles = ("train", "fitness", "evaluation")
    owners = [[role for role in roles if Selection(source, role).takes_document(i)] for i in range(5000)]
    assert all(len(owner) == 1 for owner in owners)
    counts = {role: sum(owner == [role] for owner in owners) for role in roles}
    assert abs(counts["train"] / 5000 - 0.8) < 0.03 and abs(counts["fitness"] / 5000 - 0.1) < 0.02
    assert np.array_equal(Selection(source, "fitness").cut(np.arange(10)), np.arange(10))  # documents stay whole
    again = shared({"train": 0.8, "fitness": 0.1, "evaluation": 0.1})
    assert [Selection(again, "fitness").takes_document(i) for i in range(5000)] == [o == ["fitness"] for o in owners]


def test_documents_of_takes_only_the_roles_documents(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"document {i}"} for i in range(200)])
    source = Source.from_config("corpus", {"files": ["a.jsonl"], "split": {"fitness": 0.5, "evaluation": 0.5}},
                                tmp_path)
    fitness, evaluation = (list(documents_of(Selection(source, role), source.files()))
                           for role in ("fitness", "evaluation"))
    assert sorted(fitness + evaluation, key=lambda t: int(t.split()[1])) == [f"document {i}" for i in range(200)]
    assert 70 < len(fitness) < 130


def test_a_store_is_named_by_its_source_share_and_tokenizer_not_by_the_config():
    a = Selection(shared({"by": "text", "fitness": 0.5, "evaluation": 0.5}), "fitness")
    b = Selection(shared({"by": "text", "fitness": 0.5, "evaluation": 0.5}), "fitness")
    byte, bpe = {"kind": "byte"}, {"kind": "bpe", "vocab_size": 512}
    assert a.store_name(byte) == b.store_name(byte) and a.store_name(byte).startswith("heldout-fitness-")
    assert a.store_name(byte) != a.store_name(bpe)
    assert a.store_name(byte) != Selection(a.source, "evaluation").store_name(byte)
    other_share = Selection(shared({"by": "text", "fitness": 0.4, "evaluation": 0.6}), "fitness")
    assert other_share.store_name(byte) != a.store_name(byte)


# -- the hub cache ----------------------------------------------------------------------------------------


def cached_repo(cache: Path, repo_type: str, repo: str, files: dict[str, bytes]) -> str:
    """A repository as huggingface_hub caches it: refs/main holds the commit, snapshots/<commit>/ the files."""
    commit = hashlib.sha1(repo.encode()).hexdigest()
    folder = cache / f"{repo_type}s--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    for name, content in files.items():
        path = folder / "snapshots" / commit / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return commit


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_a_cached_dataset_resolves_offline_and_its_manifest_names_the_commit(tmp_path, hub_cache):
    pd.DataFrame({"text": TEXTS}).to_parquet(tmp_path / "part.parquet")
    commit = cached_repo(hub_cache, "dataset", "org/corpus", {"data/validation-0.parquet": (tmp_path / "part.parquet")
                                                               .read_bytes(), "README.md": b"card"})
    manifest = tmp_path / "results" / "sources" / "pg.json"
    record = fetch("org/corpus", "dataset", "main", ["data/validation-*.parquet"], "data.sources.pg.hub", manifest)
    assert record["commit"] == commit and record["files"] == ["data/validation-0.parquet"]
    assert json.loads(manifest.read_text()) == record
    source = Source.from_config("pg", {"hub": "org/corpus", "files": ["data/validation-*.parquet"]}, tmp_path)
    files = source.files(snapshot(manifest))
    assert [f.name for f in files] == ["validation-0.parquet"] and list(read_documents(source, files)) == TEXTS


def test_what_the_cache_lacks_is_one_error_naming_the_key(tmp_path, hub_cache):
    cached_repo(hub_cache, "dataset", "org/corpus", {"data/train-0.parquet": b"x"})
    with pytest.raises(HubError, match=r"data.sources.pg.hub: dataset 'org/missing' at revision 'main' is not in "
                                       r"the hub cache .* \(HF_HUB_OFFLINE is set\)"):
        fetch("org/missing", "dataset", "main", ["*.parquet"], "data.sources.pg.hub", tmp_path / "m.json")
    with pytest.raises(HubError, match="no file of dataset 'org/corpus' at revision 'main' matches 'data/test-"):
        fetch("org/corpus", "dataset", "main", ["data/test-*.parquet"], "data.sources.pg.hub", tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


def test_a_cached_model_is_linked_with_safetensors_only(tmp_path, hub_cache):
    commit = cached_repo(hub_cache, "model", "org/tiny", {"config.json": b"{}", "model.safetensors": b"w",
                                                          "tokenizer.json": b"{}", "pytorch_model.bin": b"pickle"})
    out, manifest = tmp_path / "base" / "model", tmp_path / "base" / "hub.json"
    record = fetch_model("org/tiny", "main", "base_model.path", out, manifest)
    assert record["commit"] == commit and sorted(p.name for p in out.iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json"]
    assert (out / "model.safetensors").read_bytes() == b"w"
    cached_repo(hub_cache, "model", "org/pickled", {"config.json": b"{}", "pytorch_model.bin": b"pickle"})
    with pytest.raises(HubError, match=r"base_model.path: no file of model 'org/pickled' .* matches '\*.safetensors'"):
        fetch_model("org/pickled", "main", "base_model.path", tmp_path / "p", tmp_path / "p.json")


# -- end to end: a hub model, a hub parquet dataset and a local jsonl corpus, offline -----------------------


@pytest.mark.integration
def test_hub_model_and_dataset_and_local_jsonl_run_through_search_finetune_and_evaluation(tmp_path):
    """fetch_hub_model, fetch_source, tokenizer, token_store, search, finetune and evaluation on sources of every
    kind, with HF_HUB_OFFLINE=1 and a cache laid out here: the manifests name the commits, the stores their
    sources, and the search's fitness documents come from the fitness share alone."""
    import os
    import subprocess

    import yaml

    from conftest import snakemake_cmd
    from longrope.data.corpus import book_path, read_book
    from longrope.data.tokenizer import byte_tokenizer
    from longrope.data.tokens import TokenStore
    from longrope.model import tiny_llama

    cache = tmp_path / "hf" / "hub"
    model_commit = cached_repo(cache, "model", "org/tiny-llama", {})
    snapshot_dir = cache / "models--org--tiny-llama" / "snapshots" / model_commit
    tiny_llama(vocab_size=258, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, rope_theta=500.0,
               original_length=32, seed=0).save_pretrained(snapshot_dir)
    byte_tokenizer().save(snapshot_dir)
    sonnets = read_book(book_path(ROOT / "data" / "corpus", "shakespeare/sonnets"))
    poems = [p for p in sonnets.split("\n\n\n") if len(p) > 300]  # ~150 documents of a few hundred bytes
    pd.DataFrame({"poem": poems}).to_parquet(tmp_path / "poems.parquet")
    data_commit = cached_repo(cache, "dataset", "org/sonnets",
                              {"data/train-0.parquet": (tmp_path / "poems.parquet").read_bytes()})
    write_jsonl(tmp_path / "plays.jsonl", [{"text": read_book(book_path(ROOT / "data" / "corpus", f"shakespeare/{n}"))}
                                           for n in ("hamlet", "macbeth")])

    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config["data"] = {"sources": {"plays": {"files": ["plays.jsonl"]},
                                  "poems": {"hub": "org/sonnets", "files": ["data/*.parquet"], "text_field": "poem",
                                            "split": {"fitness": 0.5, "evaluation": 0.5}}},
                      "train": "plays", "fitness": "poems", "evaluation": "poems", "tokenizer": {"kind": "pretrained"}}
    config["base_model"] = {"path": "org/tiny-llama", "original_length": 32}
    config["stages"] = {"128k": {"scale": 2, "search": {"documents": {"pick": "first"}},
                                 "finetune": {"sampling": "chunks"}}}
    config.pop("export")
    config["evaluation"].update(methods=["pi"], lengths=[32, 64], documents={"count": 2})
    config["evaluation"]["needles"]["lengths"] = []  # a model's own tokenizer gets RULER from the harness
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(snakemake_cmd("--cores", "2", "--configfile", str(path), "--directory", str(tmp_path),
                                        "results/eval/search/128k.csv", "results/eval/finetune/128k.csv"),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

    assert json.loads((tmp_path / "results" / "base" / "hub.json").read_text())["commit"] == model_commit
    assert json.loads((tmp_path / "results" / "sources" / "poems.json").read_text())["commit"] == data_commit
    stores = {path.name.split("-")[1] if path.name.startswith("poems") else "train": TokenStore.open(path)
              for path in (tmp_path / "results" / "data" / "stores").iterdir()}
    assert set(stores) == {"train", "fitness", "evaluation"}
    assert len(stores["train"]) == 2 and len(stores["fitness"]) + len(stores["evaluation"]) == len(poems)
    assert stores["fitness"].meta["source"]["hub"] == "org/sonnets"
    fitness_texts, evaluation_texts = ({byte_tokenizer().decode(store[i]) for i in range(len(store))}
                                       for store in (stores["fitness"], stores["evaluation"]))
    assert not fitness_texts & evaluation_texts and fitness_texts | evaluation_texts == set(poems)
    factors = json.loads((tmp_path / "results" / "search" / "128k" / "factors.json").read_text())
    assert factors["fitness_documents"]
    assert len(pd.read_csv(tmp_path / "results" / "eval" / "search" / "128k.csv")) > 0
