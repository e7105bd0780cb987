"""config/paper/*.yaml under the SLURM profile: valid, and every job asks the cluster for what the config says."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from longrope.data.tokens import load_tokens
from test_workflow import run, scheduled, write_config

PAPER = sorted((ROOT / "config" / "paper").glob("*.yaml"))
LOCAL = {"fetch_source", "fetch_hub_model", "tokenizer", "tables", "plot_perplexity", "plot_passkey", "plot_factors", "plot_finetune_loss", "export", "all"}


def dry_run_jobs(tmp_path, config_file):
    """{rule: [(resources dict, shell command)]} of a dry run with profiles/slurm, the model folder a stand-in."""
    config = yaml.safe_load(config_file.read_text())
    model = tmp_path / "model"  # the config checks read config.json's heads and look for the model's tokenizer.json
    model.mkdir()
    shapes = ROOT / "config" / "paper" / "architectures" / f"{Path(config['base_model']['path']).name}.json"
    (model / "config.json").write_text(shapes.read_text())
    (model / "tokenizer.json").write_text("{}")
    config["base_model"]["path"] = str(model)
    path = tmp_path / config_file.name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = run("-n", "--profile", str(ROOT / "profiles" / "slurm"), "--configfile", str(path),
               "--directory", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    jobs = {}
    for block in re.split(r"\n(?=rule \S+:\n)", done.stdout + done.stderr):
        name = re.match(r"rule (\S+):", block)
        if not name:
            continue
        resources = dict(item.split("=", 1) for item in re.search(r"resources: (.*)", block)[1].split(", "))
        shell = re.search(r"Shell command: (.*)", block)
        jobs.setdefault(name[1], []).append((resources, shell[1] if shell else None))
    return config, jobs


@pytest.mark.parametrize("config_file", PAPER, ids=lambda p: p.stem)
def test_paper_config_requests_plausible_resources(tmp_path, config_file):
    config, jobs = dry_run_jobs(tmp_path, config_file)
    assert config["base_model"]["original_length"] == 4096 and config["stages"]["128k"]["scale"] == 32
    assert "pretrain_base" not in jobs  # the model comes by path
    for stage, spec in config["stages"].items():
        settings = {**config["finetune"], **spec.get("finetune", {})}
        n = spec.get("parallel", {}).get("sequence", 1)  # GPUs per window: longrope.tools.plan_memory's answer
        if "finetune" in spec:
            (resources, shell), = jobs[f"finetune_{stage}"]
            nodes = int(resources.get("nodes", 1))
            assert int(resources["gpu"]) == settings["processes"] * nodes >= 4
            assert int(resources["mem_mb"]) >= 200_000 and int(resources["runtime"]) >= 2 * 24 * 60
            if nodes > 1:  # srun starts one rank per GPU on every node
                assert resources["mpi"] == "srun" and int(resources["tasks"]) == int(resources["gpu"])
                assert shell.startswith(f"srun --nodes {nodes} --ntasks-per-node {settings['processes']} ")
            else:
                assert f"torch.distributed.run --standalone --nproc_per_node {settings['processes']} " in shell
            assert "zero3_offload.json" in shell and '"precision": "bf16"' in shell
            assert f" --sequence {n} " in shell and int(resources["gpu"]) % n == 0  # groups of n ranks share a row
        kind = "recovery" if spec["search"].get("mode") == "recovery" else "search"
        (resources, _), = jobs[f"{kind}_{stage}"]
        # the search script starts each replica's n - 1 followers itself, on the job's one node
        assert int(resources["gpu"]) >= spec["search"].get("workers", 1) * n and resources["gpu_model"]
        assert "nodes" not in resources and "mpi" not in resources
    if config["base_model"]["path"].endswith(("Llama-2-7b-hf", "Mistral-7B-v0.1")):  # the paper's 2048k fitness
        assert config["stages"]["2048k"]["parallel"]["sequence"] == 8
        assert int(jobs["search_2048k"][0][0]["gpu"]) == 8
    for name in ("evaluate_base", "evaluate_search", "evaluate_n_hat", "harness"):
        assert all(int(r["gpu"]) == 1 and int(r["runtime"]) >= 60 for r, _ in jobs[name])
    # lm-eval on every subject (base under baselines, searched, fine-tuned, final): Table 8 and RULER, a GPU job each
    assert len(jobs["harness"]) % 2 == 0 and len(jobs["harness"]) >= 8
    # Cheap jobs take nothing from the config's resources (they are localrules; tests/test_slurm.py shows that they
    # never reach sbatch); tokenizing a corpus is a CPU job on the cluster, one per role's store.
    for name in (LOCAL | {"token_store"}) & jobs.keys():
        assert all("gpu" not in r and int(r["mem_mb"]) == 8000 for r, _ in jobs[name]), name
    assert len(jobs["fetch_source"]) == len(jobs["token_store"]) == 3  # the paper's three corpora, from the hub



def test_a_paper_config_as_written_fetches_its_model_and_corpora_first(tmp_path):
    """config/paper/llama2-7b.yaml names everything by hub id: a dry run on a machine that has none of it plans the
    fetches on the submitting node, then the tokenizer and the three stores, then the searches."""
    done = run("-n", "--profile", str(ROOT / "profiles" / "slurm"), "--configfile",
               str(ROOT / "config" / "paper" / "llama2-7b.yaml"), "--directory", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    jobs = scheduled(done)
    assert {"fetch_hub_model", "fetch_source", "tokenizer", "token_store", "search_128k"} <= jobs
    text = done.stdout + done.stderr
    assert "results/base/hub.json" in text and "results/sources/pg19_validation.json" in text
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["stages"]["128k"].update(resources={"finetune": {"gpu": 2}}),
     "stages.128k.resources.finetune.gpu is 2, but fine-tuning runs 1 processes"),
    (lambda c: c.update(resources={"gpu": 1, "gres": "gpu:1"}), "resources: set gpu or gres, not both"),
    (lambda c: c["stages"]["128k"].update(resources={"search": {"nodes": 2}}),
     "stages.128k.resources.search.nodes: only fine-tuning spans several nodes"),
    (lambda c: c["stages"]["2048k"].update(resources={"finetune": {"gpu": 1}}),
     "stages.2048k.resources.finetune: the stage has no finetune section"),
    (lambda c: c["stages"]["128k"].update(resources={"finetune": {"nodes": 2}}),
     "stages.128k.resources.finetune.nodes > 1 needs a deepspeed config"),
    (lambda c: c.update(resources={"gpus": 1}), "gpus"),
    (lambda c: c["data"].update(tokenizer={"kind": "pretrained"}), "reads tokenizer.json from base_model.path"),
    (lambda c: c["stages"]["128k"].update(parallel={"sequence": 3}),
     "stages.128k.parallel.sequence = 3: 3 ranks cannot split the model's 2 attention heads evenly"),
    (lambda c: c["evaluation"].update(parallel={"sequence": 2}, attention="eager"),
     "evaluation.parallel.sequence = 2 needs sdpa or flash_attention_2 attention, not eager"),
    (lambda c: c["stages"]["128k"].update(parallel={"sequence": 2}, resources={"search": {"gpu": 1}}),
     r"stages.128k.resources.search.gpu is 1, but the search runs 2 processes \(search.workers × parallel.sequence\)"),
    (lambda c: c["stages"]["128k"].update(parallel={"sequence": 2}),
     r"stages.128k.parallel.sequence = 2 must divide the fine-tune's 1 ranks"),
])
def test_bad_cluster_config_fails_before_any_job(tmp_path, edit, message):
    done = run("-n", "--configfile", str(write_config(tmp_path, edit)), "--directory", str(tmp_path), cwd=tmp_path)
    assert done.returncode != 0
    assert re.search(message, done.stdout + done.stderr), (done.stdout + done.stderr)[-2000:]


def test_a_real_model_brings_its_own_tokenizer(tmp_path, tiny_model):
    """data.tokenizer.kind: pretrained tokenizes the corpus with base_model.path's tokenizer.json, one BOS per
    document even though that tokenizer's post-processor would add its own."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<s>": 0, "</s>": 1, "[UNK]": 2, **{chr(c): c for c in range(3, 256) if chr(c).isprintable()}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tiny_model.save_pretrained(tmp_path / "model")
    tokenizer.save(str(tmp_path / "model" / "tokenizer.json"))
    (tmp_path / "model" / "tokenizer_config.json").write_text('{"bos_token": "<s>", "eos_token": "</s>"}')

    def edit(config):
        config["base_model"]["path"] = str(tmp_path / "model")
        config["data"]["tokenizer"] = {"kind": "pretrained"}
        config["evaluation"]["needles"]["lengths"] = []  # a real tokenizer's RULER comes from the harness

    done = run("--cores", "1", "--configfile", str(write_config(tmp_path, edit)), "--directory", str(tmp_path),
               "--until", "token_store", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    tokens = load_tokens(next((tmp_path / "results" / "data" / "stores").glob("sonnets-fitness-*")))
    assert tokens[0] == 0 and tokens[1] != 0 and (tokens == 0).sum() == 1  # one held-out book, one BOS
    assert tokens[1:20].tolist() == tokenizer.encode(read_heldout_start(19), add_special_tokens=False).ids


def read_heldout_start(n):
    from longrope.data.corpus import book_path, read_book

    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    return read_book(book_path(ROOT / "data" / "corpus", config["data"]["sources"]["sonnets"]["books"][0]))[:n]


def test_the_gpu_script_plans_smollm2_at_4x_and_8x_without_fine_tuning(tmp_path):
    """scripts/run_smollm2_gpu.sh --dry-run on this CPU machine: the plan the GPU run would carry out."""
    env = {**os.environ, "WORKDIR": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "run_smollm2_gpu.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=600)
    jobs = scheduled(done)
    assert {"search_32k", "search_64k", "search_32k_lambda", "search_64k_lambda", "evaluate_base",
            "evaluate_search", "evaluate_retrieval", "tables"} <= jobs
    assert not {name for name in jobs if name.startswith(("finetune", "pretrain", "export", "recovery"))}
    config = yaml.safe_load((ROOT / "config" / "smollm2-gpu.yaml").read_text())
    assert [spec["scale"] for spec in config["stages"].values()] == [4, 8]
    assert max(config["evaluation"]["passkey"]["lengths"]) == 8 * config["base_model"]["original_length"]
    assert not (tmp_path / "results").exists()  # a plan, nothing run
