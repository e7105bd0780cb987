"""The paper's data protocol as options: fine-tuning on BOS/EOS-bookended chunks drawn without replacement
(finetune.sampling chunks, finetune.epochs), and perplexity on whole documents (evaluation.documents)."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT
from longrope.data.chunks import Chunks, epoch_order
from longrope.data.tokenizer import byte_tokenizer
from longrope.data.tokens import write_store
from longrope.data.windows import document_windows, evaluation_documents, pick_documents
from longrope.evaluation.perplexity import Perplexity
from longrope.evaluation.records import PerplexityRecords
from longrope.plan import Plan, PlanError
from longrope.search.windows import fitness_documents, fitness_windows
from longrope.training.loop import TrainConfig, batch_at, chunk_supply_error, train

# Token i of the store is i, and the markers are negative, so a row tells which chunk it is.
MARKERS = SimpleNamespace(bos_id=-1, eos_id=-2)
TOKENS = np.arange(10 * 15 + 7)  # 10 chunks of 15 content tokens (seq_len 16 → 17 a chunk), 7 left over


def chunk_of(row: torch.Tensor | np.ndarray) -> int:
    return int(row[1]) // 15


def chunk_config(**overrides) -> TrainConfig:
    return TrainConfig(**{"steps": 5, "batch_size": 2, "seq_len": 16, "lr": 1e-3, "seed": 3, "sampling": "chunks",
                          **overrides})


def test_a_chunk_is_bos_contiguous_store_tokens_eos():
    chunks = Chunks(TOKENS, 17, MARKERS.bos_id, MARKERS.eos_id)
    assert len(chunks) == 10 and chunks.content == 15
    for k in range(len(chunks)):
        row = chunks[k]
        assert len(row) == 17 and row[0] == -1 and row[-1] == -2
        assert list(row[1:-1]) == list(range(15 * k, 15 * (k + 1)))


def test_a_missing_bookend_leaves_one_more_content_token():
    chunks = Chunks(TOKENS, 17, None, MARKERS.eos_id)
    assert chunks.content == 16 and len(chunks) == len(TOKENS) // 16
    assert list(chunks[1]) == [*range(16, 32), -2]


def test_chunks_of_a_real_store_keep_its_document_markers(tmp_path):
    tokenizer = byte_tokenizer()
    store = write_store(tmp_path / "store", tokenizer, ["first book " * 5, "second " * 9], source="two books")
    chunks = Chunks(store.tokens, 9, tokenizer.bos_id, tokenizer.eos_id)
    content = np.concatenate([chunks[k][1:-1] for k in range(len(chunks))])
    assert all(chunks[k][0] == tokenizer.bos_id and chunks[k][-1] == tokenizer.eos_id for k in range(len(chunks)))
    assert np.array_equal(content, store.tokens[: len(chunks) * 7])  # the store's BOS doc EOS, cut where it falls


def test_an_epoch_draws_every_chunk_once_in_a_seeded_order():
    cfg = chunk_config()  # 5 steps × 2 rows = the 10 chunks
    seen = [chunk_of(row) for step in range(cfg.steps) for row in batch_at(step, TOKENS, cfg, MARKERS)[0]]
    assert sorted(seen) == list(range(10)) and seen != list(range(10))
    other = [chunk_of(row) for step in range(cfg.steps)
             for row in batch_at(step, TOKENS, chunk_config(seed=4), MARKERS)[0]]
    assert sorted(other) == list(range(10)) and other != seen


def test_a_batch_depends_on_seed_and_step_alone():
    cfg = chunk_config()
    in_order = [batch_at(step, TOKENS, cfg, MARKERS)[0] for step in range(cfg.steps)]
    epoch_order.cache_clear()
    for step in (3, 0, 4):  # a resumed run starts anywhere
        assert torch.equal(batch_at(step, TOKENS, cfg, MARKERS)[0], in_order[step])


def test_more_epochs_repeat_the_chunks_in_new_orders():
    cfg = chunk_config(steps=10, epochs=2)
    seen = [chunk_of(row) for step in range(cfg.steps) for row in batch_at(step, TOKENS, cfg, MARKERS)[0]]
    assert sorted(seen[:10]) == sorted(seen[10:]) == list(range(10)) and seen[:10] != seen[10:]
    assert chunk_supply_error(TOKENS, cfg, MARKERS) is None


def test_too_few_chunks_is_one_error_saying_how_many_there_are_and_are_needed():
    assert chunk_supply_error(TOKENS, chunk_config(), MARKERS) is None
    error = chunk_supply_error(TOKENS, chunk_config(steps=6), MARKERS)
    assert error == ("the training store holds 10 chunks of 17 tokens and the run needs 12; epochs > 1 lets chunks "
                     "repeat, each epoch in a new order")
    error = chunk_supply_error(TOKENS, chunk_config(steps=11, epochs=2), MARKERS)
    assert "holds 10 chunks of 17 tokens and the run needs 22, more than 2 epochs of them (20)" in error
    with pytest.raises(ValueError, match="step 6: the training store holds 10 chunks"):
        batch_at(5, TOKENS, chunk_config(steps=6), MARKERS)


def test_passkey_and_short_rows_still_join_chunk_rows():
    tokenizer = byte_tokenizer()
    tokens = np.random.default_rng(0).integers(0, 256, 4000)
    cfg = chunk_config(batch_size=8, seq_len=256, passkey_fraction=0.5, short_fraction=0.5, short_len=16)
    assert cfg.chunk_rows() == 2 and chunk_supply_error(tokens, cfg, tokenizer) is None
    long, short = batch_at(0, tokens, cfg, tokenizer)
    assert long.shape == (4, 257) and short.shape == (4, 17)
    assert (long[:2, 0] == tokenizer.bos_id).all() and (long[:2, -1] == tokenizer.eos_id).all()


def test_a_resumed_chunk_run_trains_the_weights_of_a_straight_one(tmp_path):
    from longrope.model import tiny_llama

    torch.set_num_threads(1)
    tokens = np.random.default_rng(0).integers(0, 256, 3000)
    cfg = chunk_config(steps=4, batch_size=2, seq_len=32, checkpoint_every=2)

    def trained(work):
        model = tiny_llama(258, 32, 2, 2, 64, 500.0, 32, seed=0)
        train(model, tokens, byte_tokenizer(), cfg, work, work / "loss.csv")
        return model.state_dict()

    straight = trained(tmp_path / "a")  # leaves its step-2 checkpoint behind
    resumed = trained(tmp_path / "a")   # resumes from it and trains steps 3 and 4 again
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)


def test_epochs_without_chunks_is_a_config_error():
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config["stages"]["128k"]["finetune"].update(sampling="blocks", epochs=2)
    with pytest.raises(PlanError, match="stages.128k.finetune.epochs 2: .* need sampling 'chunks', not 'blocks'"):
        Plan.load(config, ROOT)


# ---------------------------------------------------------------------------------------------
# Evaluation on documents

LENGTHS = np.array([50, 10, 80, 30, 90, 60, 20])


def test_documents_are_the_first_long_enough_ones_or_drawn_by_seed():
    assert list(pick_documents(LENGTHS, 40, 3, "first", seed=0)) == [0, 2, 4]
    drawn = pick_documents(LENGTHS, 40, 3, "seeded", seed=[1, 40])
    assert set(drawn) <= {0, 2, 4, 5} and list(drawn) == sorted(drawn) and len(set(drawn)) == 3
    assert np.array_equal(drawn, pick_documents(LENGTHS, 40, 3, "seeded", seed=[1, 40]))
    draws = {tuple(pick_documents(LENGTHS, 40, 3, "seeded", seed=[s, 40])) for s in range(20)}
    assert len(draws) > 1


def test_too_few_long_documents_say_how_many_exist_and_were_asked():
    with pytest.raises(ValueError, match="2 documents of at least 70 tokens exist, 3 asked for"):
        pick_documents(LENGTHS, 70, 3, "first", seed=0)


def test_every_length_that_min_length_covers_scores_the_same_documents(tmp_path):
    texts = [chr(ord("a") + i) * n for i, n in enumerate([30, 300, 120, 500, 260, 90, 400])]
    store = write_store(tmp_path / "store", byte_tokenizer(), texts, source="seven")
    spec = {"count": 2, "min_length": 250, "pick": "seeded"}
    chosen = {span: tuple(evaluation_documents(store, span, 1, **spec)) for span in (32, 64, 250, 350)}
    assert chosen[32] == chosen[64] == chosen[250] and set(chosen[32]) <= {1, 3, 4, 6}
    assert set(chosen[350]) <= {3, 6}  # longer than min_length: documents that hold the span
    assert list(evaluation_documents(store, 100, 1, count=3)) == [1, 2, 3]  # first, of at least the span


def test_evaluation_documents_need_a_count_and_default_to_none():
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    assert Plan.load(config, ROOT).evaluation["documents"] is None
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config["evaluation"]["documents"] = {"pick": "seeded"}
    with pytest.raises(PlanError, match="evaluation.documents: 'count' is a required property"):
        Plan.load(config, ROOT)


def test_documents_are_cut_to_the_length_and_their_ids_recorded(tmp_path):
    tokenizer = byte_tokenizer()
    texts = ["a" * 5, "b" * 40, "c" * 3, "d" * 30]
    store = write_store(tmp_path / "store", tokenizer, texts, source="four")
    ids = pick_documents(np.diff(store.documents), 20, 2, "first", seed=0)
    windows = document_windows(store, ids, 20)
    assert list(ids) == [1, 3] and windows.shape == (2, 20)
    assert windows[0, 0] == tokenizer.bos_id and bytes(windows[1, 1:].tolist()) == b"d" * 19

    records = PerplexityRecords()
    key = {"study": "s", "model": "base", "method": "none", "scale": 1.0, "n_hat": 0, "length": 20}
    records.add(key, Perplexity(np.array([1.0, 2.0]), 38), store.documents[ids], 0.1, ids)
    records.add({**key, "length": 10}, Perplexity(np.array([1.0, 2.0]), 18), [0, 10], 0.1)
    records.save(tmp_path / "ppl.csv", tmp_path / "ppl.windows.csv")
    saved = pd.read_csv(tmp_path / "ppl.windows.csv")
    assert saved["document"].tolist()[:2] == [1, 3] and saved["start"].tolist()[:2] == list(store.documents[ids])


def test_windows_records_without_documents_have_no_document_column(tmp_path):
    records = PerplexityRecords()
    key = {"study": "s", "model": "base", "method": "none", "scale": 1.0, "n_hat": 0, "length": 20}
    records.add(key, Perplexity(np.array([1.0]), 19), [0], 0.1)
    records.save(tmp_path / "ppl.csv", tmp_path / "ppl.windows.csv")
    assert "document" not in pd.read_csv(tmp_path / "ppl.windows.csv").columns


# ---------------------------------------------------------------------------------------------
# Search fitness on documents


def fitness_settings(**overrides):
    return SimpleNamespace(**{"seed": 5, "samples": 2, "fitness": "ppl", "needles": 1, "documents": None,
                              **overrides})


@pytest.fixture
def fitness_store(tmp_path):
    texts = [letter * n for letter, n in zip("abcdef", [100, 700, 50, 900, 800, 300])]
    return write_store(tmp_path / "fitness", byte_tokenizer(), texts, source="six")


def test_fitness_on_documents_scores_their_first_tokens(fitness_store):
    settings = fitness_settings(documents={"min_length": 600})
    assert list(fitness_documents(fitness_store, 256, settings)) == [1, 3]
    windows, scored = fitness_windows(fitness_store, None, 256, settings, original_length=32)
    assert scored is None and np.array_equal(windows, document_windows(fitness_store, [1, 3], 256))
    assert fitness_documents(fitness_store, 256, fitness_settings()) is None


def test_needle_fitness_plants_its_needles_in_the_documents(fitness_store):
    tokenizer = byte_tokenizer()
    settings = fitness_settings(fitness="needle_ppl", documents={"min_length": 600, "pick": "seeded"})
    ids = fitness_documents(fitness_store, 512, settings)
    windows, scored = fitness_windows(fitness_store, tokenizer, 512, settings, original_length=32)
    for window, document in zip(windows, ids):
        counts = np.bincount(window, minlength=258)
        assert counts[ord("abcdef"[document])] >= 400  # the haystack: that document's text (+ a needle and its recall)
    assert scored.any()


def test_too_few_fitness_documents_name_the_key(fitness_store):
    with pytest.raises(ValueError, match=r"search.documents \(fitness at 512 tokens\): 3 documents of at least 512 "
                                         r"tokens exist, 4 asked for"):
        fitness_windows(fitness_store, None, 512, fitness_settings(samples=4, documents={}), original_length=32)


def test_factors_record_fitness_documents_only_when_used(tmp_path):
    from longrope.factors import FoundFactors
    from longrope.rope import RopeScaling

    found = FoundFactors("128k", RopeScaling("longrope", 32, 64, factors=(1.0,) * 8), 2.0, 3.0, 2, 10, 0, {},
                         "base", 4, "float32")
    found.save(tmp_path / "a.json", tmp_path / "a.csv")
    assert "fitness_documents" not in (tmp_path / "a.json").read_text()
    with_ids = FoundFactors(**{**found.__dict__, "fitness_documents": {"64": [1, 3]}})
    with_ids.save(tmp_path / "b.json", tmp_path / "b.csv")
    assert FoundFactors.load(tmp_path / "b.json").fitness_documents == {"64": [1, 3]}


def test_a_stage_may_search_on_documents():
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config["stages"]["128k"]["search"]["documents"] = {"pick": "seeded"}
    plan = Plan.load(config, ROOT)
    assert plan.stages["128k"].search.documents == {"pick": "seeded"} and plan.stages["256k"].search.documents is None
