import re

import numpy as np
import pytest

from longrope.data.corpus import encode_documents, list_books, read_book, book_path
from longrope.data.prompts import passkey_prompt, passkey_training_example
from longrope.data.tokenizer import byte_tokenizer, load_tokenizer, train_tokenizer
from longrope.data.windows import (needle_windows, nested_windows, sample_windows, samples_for_length,
                                   window_starts)
from conftest import ROOT

CORPUS = ROOT / "data" / "corpus"


def test_vendored_corpus_matches_its_checksums():
    import hashlib

    for line in (CORPUS / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((CORPUS / name).read_bytes()).hexdigest() == digest, name


def test_list_books_expands_globs_and_rejects_unknown():
    plays = list_books(CORPUS, ["shakespeare/*"])
    assert len(plays) == 42 and plays == sorted(plays) and "shakespeare/hamlet" in plays
    with pytest.raises(FileNotFoundError, match="no book .* matches 'dickens-\\*'"):
        list_books(CORPUS, ["dickens-*"])
    with pytest.raises(FileNotFoundError, match="'austen-persuasion' not found"):
        book_path(CORPUS, "austen-persuasion")


def test_a_book_that_is_not_utf8_names_its_file(tmp_path):
    import gzip

    with gzip.open(tmp_path / "latin1.txt.gz", "wb") as f:
        f.write("Émile".encode("latin-1"))
    with pytest.raises(ValueError, match=r"book .*latin1.txt.gz is not gzipped UTF-8 text: .*can't decode byte 0xc9"):
        read_book(tmp_path / "latin1.txt.gz")


TEXT = "Emma Woodhouse — handsome, clever, and rich, with a comfortable home 漢字\n\tand happy disposition"


def test_byte_tokenizer_ids_are_the_utf8_bytes(tmp_path):
    tok = byte_tokenizer()
    assert tok.encode(TEXT) == list(TEXT.encode("utf-8"))
    assert tok.decode(tok.encode(TEXT)) == TEXT
    assert (tok.vocab_size, tok.bos_id, tok.eos_id) == (258, 256, 257)
    tok.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.encode(TEXT) == tok.encode(TEXT) and (loaded.bos_id, loaded.eos_id) == (256, 257)


@pytest.mark.parametrize("kind", ["byte", "bpe"])
def test_our_tokenizers_round_trip_in_stock_transformers(tmp_path, kind):
    """The folder we save (and export beside the model) opens with AutoTokenizer, no custom code, and encodes and
    decodes exactly as the project's tokenizer; its own encode starts with BOS, as our documents do."""
    from transformers import AutoTokenizer

    sample = read_book(book_path(CORPUS, "shakespeare/sonnets"))[:3000] + TEXT
    tok = train_tokenizer(kind, [sample], vocab_size=400)
    tok.save(tmp_path / "tok")
    stock = AutoTokenizer.from_pretrained(tmp_path / "tok", local_files_only=True)
    ids = tok.encode(sample)
    assert stock.encode(sample, add_special_tokens=False) == ids
    assert stock.encode(sample) == [tok.bos_id, *ids]
    assert stock.decode(ids) == tok.decode(ids) == sample
    assert (stock.bos_token_id, stock.eos_token_id) == (tok.bos_id, tok.eos_id)


def test_bpe_tokenizer_trains_saves_and_loads(tmp_path):
    text = read_book(book_path(CORPUS, "shakespeare/sonnets"))
    tok = train_tokenizer("bpe", [text], vocab_size=400)
    assert tok.vocab_size == 400 and tok.bos_id is not None and tok.eos_id is not None
    sample = text[:500]
    assert tok.decode(tok.encode(sample)) == sample
    assert len(tok.encode(sample)) < len(sample.encode())  # it does compress
    tok.save(tmp_path / "bpe")
    assert load_tokenizer(tmp_path / "bpe").encode(sample) == tok.encode(sample)
    with pytest.raises(ValueError, match="needs vocab_size"):
        train_tokenizer("bpe", [text])
    with pytest.raises(ValueError, match="unknown tokenizer kind 'wordpiece'"):
        train_tokenizer("wordpiece", [text])


def pretrained_folder(folder, specials, adds_bos, tokenizer_config=None, model_config=None):
    """A model's tokenizer folder: a character-level vocabulary after `specials`, a post-processor that starts
    sequences with the first special token when `adds_bos`."""
    import json

    from tokenizers import Tokenizer as HFTokenizer, models, pre_tokenizers, processors

    vocab = {**{t: i for i, t in enumerate(specials)}, "[UNK]": len(specials)}
    vocab.update({chr(c): len(vocab) + i for i, c in enumerate(range(32, 127))})
    tokenizer = HFTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer.add_special_tokens(list(specials))
    if adds_bos:
        tokenizer.post_processor = processors.TemplateProcessing(single=f"{specials[0]} $A",
                                                                 special_tokens=[(specials[0], 0)])
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    for name, content in (("tokenizer_config.json", tokenizer_config), ("config.json", model_config)):
        if content is not None:
            (folder / name).write_text(json.dumps(content))
    return folder


def test_documents_use_the_models_own_markers(tmp_path):
    """Llama 2 starts sequences with <s> and ends documents with </s>; SmolLM2 names <|im_start|> its BOS but never
    adds it, so its documents are separated by EOS alone; Qwen2 has no BOS at all; a Mistral-style folder without
    tokenizer_config.json names its markers in config.json."""
    cases = [
        (["<s>", "</s>"], True, {"bos_token": "<s>", "eos_token": "</s>"}, None, (0, 1)),
        (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], False,
         {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>"}, None, (None, 2)),
        (["<|endoftext|>"], False, {"bos_token": None, "eos_token": "<|endoftext|>"}, None, (None, 0)),
        (["<s>", "</s>"], True, None, {"bos_token_id": 0, "eos_token_id": 1}, (0, 1)),
    ]
    for i, (specials, adds_bos, tokenizer_config, model_config, (bos, eos)) in enumerate(cases):
        tok = load_tokenizer(pretrained_folder(tmp_path / str(i), specials, adds_bos, tokenizer_config, model_config))
        assert (tok.bos_id, tok.eos_id) == (bos, eos), specials
        ab, c = tok.encode("ab"), tok.encode("c")
        assert encode_documents(tok, ["ab", "c"]).tolist() == (
            [bos, *ab, eos, bos, *c, eos] if bos is not None else [*ab, eos, *c, eos])


def test_a_tokenizer_without_document_markers_is_rejected(tmp_path):
    folder = pretrained_folder(tmp_path / "t", ["<pad>"], False, {"pad_token": "<pad>"})
    with pytest.raises(ValueError, match="has neither a BOS nor an EOS token to separate documents"):
        load_tokenizer(folder)
    with pytest.raises(FileNotFoundError, match="has no tokenizer.json"):
        load_tokenizer(tmp_path)


def test_documents_are_joined_with_bos_and_eos():
    tok = byte_tokenizer()
    ids = encode_documents(tok, ["ab", "c"])
    assert ids.tolist() == [tok.bos_id, 97, 98, tok.eos_id, tok.bos_id, 99, tok.eos_id]
    assert ids.dtype == np.uint16


def test_windows_are_seeded_non_overlapping_and_inside_the_region():
    tokens = np.arange(10_000)
    a = sample_windows(tokens, 256, 8, seed=[3, 256])
    assert a.shape == (8, 256) and a.dtype == np.int64
    assert np.array_equal(a, sample_windows(tokens, 256, 8, seed=[3, 256]))
    assert not np.array_equal(a, sample_windows(tokens, 256, 8, seed=[4, 256]))
    assert len(set(a.ravel())) == a.size  # no token in two windows
    assert all(np.array_equal(w, np.arange(w[0], w[0] + 256)) for w in a)  # contiguous slices
    with pytest.raises(ValueError, match="holds only 39 windows of 256, 40 asked for"):
        sample_windows(tokens, 256, 40, seed=0)


def test_window_starts_depend_only_on_region_length_count_and_seed():
    """Every model and scaling at a length is scored on the same windows: paired comparisons rely on it."""
    starts = window_starts(10_000, 256, 8, seed=[3, 256])
    assert np.array_equal(starts, window_starts(10_000, 256, 8, seed=[3, 256]))
    assert (starts % 256 == 0).all() and (np.diff(starts) >= 256).all() and starts[-1] + 256 <= 10_000
    tokens = np.arange(10_000)
    assert np.array_equal(sample_windows(tokens, 256, 8, seed=[3, 256])[:, 0], starts)


def test_nested_windows_are_seeded_spans_without_overlap_inside_the_region():
    counts = {128: 20, 512: 6, 2048: 2}
    design = nested_windows(20_000, counts, seed=[3])
    assert np.array_equal(design.starts, nested_windows(20_000, counts, seed=[3]).starts)
    assert not np.array_equal(design.starts, nested_windows(20_000, counts, seed=[4]).starts)
    extents = [design.extent(i) for i in range(20)]
    assert extents == [2048] * 2 + [512] * 4 + [128] * 14  # each span as long as the longest length it serves
    spans = sorted(zip(design.starts.tolist(), extents))
    assert spans[0][0] >= 0 and spans[-1][0] + spans[-1][1] <= 20_000
    assert all(start + extent <= following for (start, extent), (following, _) in zip(spans, spans[1:]))
    assert np.array_equal(design.starts_at(512), design.starts[:6])


def test_nested_windows_that_do_not_fit_are_refused_naming_what_they_need():
    with pytest.raises(ValueError, match="holds 7000 tokens; windows of .* need 7936"):
        nested_windows(7000, {128: 20, 512: 6, 2048: 2}, seed=0)
    with pytest.raises(ValueError, match="must not grow"):
        nested_windows(7000, {128: 2, 512: 6}, seed=0)


def test_samples_score_enough_tokens_within_the_bounds_and_the_region():
    assert samples_for_length(128, 256, 16384, 4, 10**6) == 130  # 130 windows × 127 scored tokens ≥ 16,384
    assert samples_for_length(2048, 256, 16384, 4, 10**6) == 9
    assert samples_for_length(16384, 256, 16384, 4, 10**6) == 4  # at least min_samples
    assert samples_for_length(128, 8, 16384, 4, 10**6) == 8  # at most max_samples
    assert samples_for_length(16384, 256, 16384, 4, 3 * 16384 + 5) == 3  # what the region holds


@pytest.mark.parametrize("length", [110, 500, 2000])
def test_passkey_prompt_fills_the_length_and_places_the_needle(length):
    tok = byte_tokenizer()
    early = passkey_prompt(tok, length, depth=0.0, key=31415, with_task=length > 400)
    late = passkey_prompt(tok, length, depth=1.0, key=31415, with_task=length > 400)
    for p in (early, late):
        assert length - 3 <= len(p.prompt) + len(p.answer) <= length  # the answer is decoded within the length
        assert tok.decode(p.prompt).endswith("What is the pass key? The pass key is")
        assert tok.decode(p.answer) == " 31415."
    needle = "The pass key is 31415."
    assert tok.decode(early.prompt).find(needle) < tok.decode(late.prompt).find(needle)
    with pytest.raises(ValueError, match="even without filler"):
        passkey_prompt(tok, 60, depth=0.5, key=1)


def test_passkey_training_example_ends_with_its_answer():
    tok = byte_tokenizer()
    rng = np.random.default_rng(0)
    ids = passkey_training_example(tok, 128, rng)
    assert ids.shape == (128,)
    text = tok.decode(ids)
    key = text.split("The pass key is ")[1].split(".")[0]
    assert text.rstrip("\ufffd").endswith(f"The pass key is {key}.")


STATEMENT = re.compile(r"\nThe secret number of ([A-Z][a-z]{5}) is (\d{5})\.\n")


def test_needle_windows_are_runs_of_the_fitness_text_with_statements_planted():
    """Fitness ids 128-191, none an ASCII byte as every statement token is: each window is one contiguous run of
    the fitness text, at sample_windows' start, with the statements planted in it."""
    tok = byte_tokenizer()
    rng = np.random.default_rng(0)
    fitness = rng.integers(128, 192, 6000)
    needles = needle_windows(fitness, tok, 1024, 4, seed=[7, 1024], original_length=128)
    assert needles.ids.shape == needles.scored.shape == (4, 1024) and needles.ids.dtype == np.int64
    for ids, start in zip(needles.ids, window_starts(len(fitness), 1024, 4, [7, 1024])):
        hay = ids[ids >= 128]
        assert np.array_equal(hay, fitness[start : start + len(hay)])
        statements = STATEMENT.findall(tok.decode(ids[ids < 128]))
        assert len(statements) == 8 and sorted(statements[:4]) == sorted(statements[4:])  # planted, then recalled
        assert len(hay) == 1024 - len(tok.decode(ids[ids < 128]))
    again = needle_windows(fitness, tok, 1024, 4, seed=[7, 1024], original_length=128)
    other = needle_windows(fitness, tok, 1024, 4, seed=[8, 1024], original_length=128)
    assert np.array_equal(again.ids, needles.ids) and np.array_equal(again.scored, needles.scored)
    assert not np.array_equal(other.ids, needles.ids)


@pytest.mark.parametrize("length, far", [(1024, True), (300, False)])
def test_needles_lie_far_before_their_recalled_digits_the_only_scored_tokens(length, far):
    """Byte tokens: text offsets are token positions. The recalled digit at position b is predicted from b - 1."""
    tok = byte_tokenizer()
    text = read_book(book_path(CORPUS, "shakespeare/sonnets")).encode()[:20000]
    needles = needle_windows(np.frombuffer(text, np.uint8), tok, length, 3, seed=1, original_length=128, needles=3)
    for ids, scored in zip(needles.ids, needles.scored):
        found = list(STATEMENT.finditer("".join(chr(t) if t < 128 else "#" for t in ids)))  # a character a token
        planted, recalled = found[:3], found[3:]
        assert recalled[-1].end() == length  # the recall block ends the window
        assert sorted(m.groups() for m in planted) == sorted(m.groups() for m in recalled)
        assert np.flatnonzero(scored).tolist() == [b for m in recalled for b in range(*m.span(2))]
        hay = length - 2 * sum(len(m.group()) for m in planted)
        before = [m.start() - sum(len(p.group()) for p in planted[:j]) for j, m in enumerate(planted)]  # hay tokens
        if far:
            assert hay - before[-1] >= 128  # haystack tokens between the last statement and the recall block
            digit = {m.group(1): m.start(2) for m in planted}
            assert all(m.start(2) - 1 - digit[m.group(1)] > 128 for m in recalled)
        else:  # too short for that: the first half of the haystack
            assert hay < 128 and max(before) <= hay // 2


def test_needle_digits_are_scored_under_a_bpe_tokenizer():
    sample = read_book(book_path(CORPUS, "shakespeare/sonnets"))
    tok = train_tokenizer("bpe", [sample[:20000]], vocab_size=400)
    needles = needle_windows(np.asarray(tok.encode(sample[20000:60000])), tok, 512, 2, seed=3, original_length=64)
    for ids, scored in zip(needles.ids, needles.scored):
        recalled = STATEMENT.findall(tok.decode(ids))[4:]
        assert "".join(c for c in tok.decode(ids[scored]) if c.isdigit()) == "".join(v for _, v in recalled)
        assert all(any(c.isdigit() for c in tok.decode([t])) for t in ids[scored])
        assert tok.decode(ids[: np.flatnonzero(scored)[0]]).count("The secret number of") == 4 + 1  # in the recall


def test_needles_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="need 3.. tokens, more than the window's 256"):
        needle_windows(np.zeros(1000, np.uint16), byte_tokenizer(), 256, 1, seed=0, original_length=128)
