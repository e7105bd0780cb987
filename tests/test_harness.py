"""lm-evaluation-harness through the workflow (longrope.harness), offline: the tables' arithmetic on hand-made
scores, local-file tasks and RULER's generated subtasks on tiny models, the scaling under test really scored."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import ROOT
from longrope.harness.report import paired_ratio, reported, retention, ruler_table, suite_table
from longrope.harness.suites import Suite

SUBJECT = {"model": "base", "method": "none", "scale": 1.0}


def samples(subject: str, task: str, scores, leaf: str | None = None, length=None, metric="acc", **columns):
    return pd.DataFrame({"subject": subject, **SUBJECT, "task": task, "leaf": leaf or task, "length": length,
                         "doc_id": range(len(scores)), "filter": "none", "metric": metric, "score": scores,
                         "response": "", **columns})


# -- the tables' arithmetic ----------------------------------------------------------------------------------


def test_a_group_is_the_unweighted_mean_of_its_subtasks_with_an_interval():
    """MMLU as the leaderboard averaged it: two subjects of 2 and 8 questions count alike."""
    suite = Suite.from_config("table8", {})
    frame = pd.concat([samples("base_none", "mmlu", [1.0, 1.0], leaf="mmlu_a"),
                       samples("base_none", "mmlu", [0.0] * 8, leaf="mmlu_b"),
                       samples("base_none", "arc_challenge", [1, 0, 1, 0], metric="acc_norm"),
                       samples("base_none", "arc_challenge", [1, 1, 1, 1], metric="acc")])
    table = suite_table(frame, suite).iloc[0]
    assert table["mmlu (5-shot)"] == pytest.approx(50.0)  # weighted by size it would be 20
    assert table["arc_challenge (25-shot)"] == pytest.approx(50.0)  # acc_norm, the paper's metric, not acc
    assert table["mmlu (5-shot) lo"] < 50 < table["mmlu (5-shot) hi"]
    assert math.isnan(table["hellaswag (10-shot)"])
    assert table["average"] == pytest.approx(50.0)


def test_effective_length_is_the_last_length_before_the_first_failure():
    suite = Suite("ruler", (("niah_single_1", 0), ("ruler_cwe", 0)), lengths=(4, 8, 16, 32), threshold=85.6)
    score = {4: 1.0, 8: 0.9, 16: 0.5, 32: 1.0}  # 32 passes again, but 16 broke the run
    frame = pd.concat([samples("ft", task, [score[n]] * 10, length=n, metric=str(n))
                       for task in ("niah_single_1", "ruler_cwe") for n in suite.lengths])
    table = ruler_table(frame, suite).iloc[0]
    assert table["effective length"] == 8
    assert [table[str(n)] for n in suite.lengths] == pytest.approx([100, 90, 50, 100])
    assert table["8 lo"] < 90 < table["8 hi"] and table["4 lo"] < 100 == table["4 hi"]
    failing = frame.assign(score=0.0)
    assert ruler_table(failing, suite).iloc[0]["effective length"] == 0


def test_retention_is_paired_on_the_samples_both_answered():
    suite = Suite.from_config("short", {"tasks": ["a"]})
    rng = np.random.default_rng(0)
    base = rng.random(200)
    frame = pd.concat([samples("base_none", "a", base), samples("ext", "a", base * 0.9)])
    frame.loc[frame["subject"] == "ext", "method"] = "yarn"
    table = retention(frame, suite, base="base_none")
    ratio = table.iloc[0]
    assert ratio["ratio to base"] == pytest.approx(0.9)
    # Every resample keeps the pairing, so a uniform 10 % loss has no spread at all.
    assert ratio["ratio to base lo"] == pytest.approx(0.9) and ratio["ratio to base hi"] == pytest.approx(0.9)
    noisy = pd.concat([samples("base_none", "a", base), samples("ext", "a", rng.random(200))])
    value, lo, hi = paired_ratio(reported(noisy[noisy["subject"] == "ext"], suite),
                                 reported(noisy[noisy["subject"] == "base_none"], suite))
    assert lo < value < hi and hi - lo > 0.1
    with pytest.raises(ValueError, match="retention needs the base subject 'base_none'"):
        retention(frame[frame["subject"] == "ext"], suite, base="base_none")


def test_suites_fill_their_defaults_and_refuse_emptiness():
    ruler = Suite.from_config("ruler", {"lengths": [4096]})
    assert [task for task, _ in ruler.tasks] == ["niah_single_1", "niah_multikey_2", "niah_multikey_3", "ruler_cwe",
                                                  "ruler_fwe"] and ruler.threshold == 85.6
    table8 = Suite.from_config("table8", {})
    assert dict(table8.tasks) == {"arc_challenge": 25, "hellaswag": 10, "mmlu": 5, "truthfulqa_mc2": 0}
    assert Suite.from_config("table8", table8.to_dict()) == table8
    with pytest.raises(ValueError, match="harness.suites.mine: no tasks"):
        Suite.from_config("mine", {"limit": 3})


# -- lm-eval on tiny models ------------------------------------------------------------------------------------


def write_local_tasks(folder, context_words: int = 30):
    """A multiple-choice and a generate_until task on jsonl files written here (lm-eval's `json` builder)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "stone", "river", "cloud", "seven", "bread"]
    rows = [{"context": " ".join(rng.choice(words, context_words)), "choices": ["yes", "no", "maybe"],
             "label": int(i % 3), "answer": str(i)} for i in range(6)]
    (folder / "docs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    common = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(folder / "docs.jsonl")}},
              "test_split": "test", "doc_to_text": "{{context}} Answer:"}
    (folder / "mc.yaml").write_text(yaml.safe_dump({
        "task": "local_mc", **common, "output_type": "multiple_choice", "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{label}}", "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}))
    (folder / "gen.yaml").write_text(yaml.safe_dump({
        "task": "local_gen", **common, "output_type": "generate_until", "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": ["\n"], "max_gen_toks": 4, "do_sample": False},
        "metric_list": [{"metric": "exact_match"}]}))
    return folder


@pytest.fixture(scope="module")
def byte_tokenizer_dir(tmp_path_factory):
    from longrope.data.tokenizer import byte_tokenizer

    folder = tmp_path_factory.mktemp("byte_tokenizer")
    byte_tokenizer().save(folder)
    return folder


def test_the_scaling_under_test_is_what_lm_eval_scores(tmp_path, tiny_model, byte_tokenizer_dir):
    """Contexts past L0 = 32 (byte tokens): the same model with and without a LongRoPE scaling answers the local
    tasks differently, and lm-eval's max_length is the subject's extended length, not max_position_embeddings."""
    from longrope.harness.run import harness_model, run_suite
    from longrope.patching import apply_rope_scaling
    from longrope.rope import RopeScaling

    suite = Suite.from_config("local", {"tasks": ["local_mc", "local_gen"],
                                        "include": str(write_local_tasks(tmp_path / "tasks"))})
    plain = run_suite(harness_model(tiny_model, byte_tokenizer_dir, 256), suite, byte_tokenizer_dir)
    scaling = RopeScaling("longrope", original_length=32, target_length=256, factors=(8.0,) * 8)
    apply_rope_scaling(tiny_model, scaling)
    lm = harness_model(tiny_model, byte_tokenizer_dir, scaling.target_length)
    assert lm.max_length == 256 != tiny_model.config.max_position_embeddings
    scaled = run_suite(lm, suite, byte_tokenizer_dir)
    for (raw, scores, rows) in (plain, scaled):
        assert set(rows["task"]) == {"local_mc", "local_gen"} and len(rows[rows["metric"] == "acc"]) == 6
        assert {"acc", "acc_norm", "exact_match"} <= set(scores["metric"])
        assert json.dumps(raw, default=str)
    mc = [frame[frame["metric"] == "acc"]["response"].tolist() for _, _, frame in (plain, scaled)]
    assert mc[0] != mc[1]  # each choice's log-likelihood moved with the scaling


def test_ruler_generates_and_scores_offline_with_a_subword_tokenizer(tmp_path):
    """RULER's offline subtasks build their samples at the asked lengths with the tokenizer given, here a BPE trained
    on the bundled books; the scores come per length, without lm-eval's -1 placeholder."""
    from transformers import AutoTokenizer

    from longrope.data.corpus import book_path, read_book
    from longrope.data.tokenizer import train_tokenizer
    from longrope.harness.run import harness_model, run_suite
    from longrope.model import tiny_llama

    texts = [read_book(book_path(ROOT / "data" / "corpus", name)) for name in ("shakespeare/hamlet", "austen-emma")]
    train_tokenizer("bpe", texts, 1024).save(tmp_path / "tokenizer")
    vocab = len(AutoTokenizer.from_pretrained(str(tmp_path / "tokenizer")))
    model = tiny_llama(vocab_size=vocab, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                       rope_theta=500.0, original_length=512, seed=0).eval()
    suite = Suite.from_config("ruler", {"tasks": ["niah_single_1", "niah_multikey_2"], "lengths": [384, 512],
                                        "limit": 1, "max_gen_toks": 8})
    _, scores, rows = run_suite(harness_model(model, tmp_path / "tokenizer", 512), suite, tmp_path / "tokenizer")
    # `limit` holds per length: lm-eval's own limit would take the first length's samples only
    assert rows.groupby(["task", "length"]).size().to_dict() == {
        (task, n): 1 for task in ("niah_single_1", "niah_multikey_2") for n in (384, 512)}
    assert rows["score"].between(0, 1).all()
    assert set(scores["metric"]) == {"384", "512"} and (scores["value"] >= 0).all()  # no -1 placeholders


@pytest.mark.integration
def test_the_harness_rule_tables_local_tasks_for_the_chosen_subjects(tmp_path):
    """config/test.yaml with a suite of local-file tasks for the base model under plain RoPE and YaRN: the rule,
    the tidy CSV, the suite's table and the retention table, each number with its interval."""
    import subprocess

    from conftest import snakemake_cmd

    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config["harness"] = {"suites": {"local": {"tasks": {"local_mc": 0, "local_gen": 0},
                                              "include": str(write_local_tasks(tmp_path / "tasks"))}},
                         "subjects": ["base_yarn"]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run(snakemake_cmd("--cores", "2", "--configfile", str(path), "--directory", str(tmp_path),
                                        "results/tables/harness_local.csv"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    scores = pd.read_csv(tmp_path / "results" / "harness" / "local" / "base_yarn.csv")
    assert set(scores["subject"]) == {"base_yarn"} and {"local_mc", "local_gen"} <= set(scores["task"])
    table = pd.read_csv(tmp_path / "results" / "tables" / "harness_local.csv", index_col=[0, 1, 2, 3])
    assert list(table.index.get_level_values("subject")) == ["base_none", "base_yarn"]
    assert {"local_mc (0-shot) lo", "local_gen (0-shot) hi", "average"} <= set(table.columns)
    kept = pd.read_csv(tmp_path / "results" / "tables" / "harness_local_retention.csv")
    assert list(kept["subject"]) == ["base_yarn"] and kept["ratio to base lo"].notna().all()
    assert "| base_yarn |" in (tmp_path / "results" / "tables" / "harness_local.md").read_text()
