import numpy as np
import pytest

from longrope.data import (ByteTokenizer, encode_documents, list_books, load_tokenizer, passkey_prompt,
                           passkey_training_example, read_book, book_path, sample_windows, samples_for_length,
                           split_heldout, train_tokenizer)
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


def test_byte_tokenizer_round_trip(tmp_path):
    tok = ByteTokenizer()
    text = "Emma Woodhouse — handsome, clever, and rich"
    assert tok.decode(tok.encode(text)) == text
    tok.save(tmp_path / "t.json")
    assert isinstance(load_tokenizer(tmp_path / "t.json"), ByteTokenizer)


def test_bpe_tokenizer_trains_saves_and_loads(tmp_path):
    text = read_book(book_path(CORPUS, "shakespeare/sonnets"))
    tok = train_tokenizer("bpe", [text], vocab_size=400)
    assert tok.vocab_size == 400 and tok.bos_id is not None and tok.eos_id is not None
    sample = text[:500]
    assert tok.decode(tok.encode(sample)) == sample
    assert len(tok.encode(sample)) < len(sample.encode())  # it does compress
    tok.save(tmp_path / "bpe.json")
    assert load_tokenizer(tmp_path / "bpe.json").encode(sample) == tok.encode(sample)
    with pytest.raises(ValueError, match="needs vocab_size"):
        train_tokenizer("bpe", [text])
    with pytest.raises(ValueError, match="unknown tokenizer kind 'wordpiece'"):
        train_tokenizer("wordpiece", [text])


def test_documents_are_joined_with_bos_and_eos():
    tok = ByteTokenizer()
    ids = encode_documents(tok, ["ab", "c"])
    assert ids.tolist() == [tok.bos_id, 97, 98, tok.eos_id, tok.bos_id, 99, tok.eos_id]
    assert ids.dtype == np.uint16


def test_heldout_split_is_disjoint_and_complete():
    tokens = np.arange(1000)
    fitness, evaluation = split_heldout(tokens, 0.3)
    assert len(fitness) == 300 and not set(fitness) & set(evaluation)
    assert np.array_equal(np.concatenate([fitness, evaluation]), tokens)


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


def test_samples_shrink_with_length():
    assert samples_for_length(128, 8, 32768) == 8
    assert samples_for_length(8192, 8, 32768) == 4
    assert samples_for_length(65536, 8, 32768) == 1


@pytest.mark.parametrize("length", [110, 500, 2000])
def test_passkey_prompt_fills_the_length_and_places_the_needle(length):
    tok = ByteTokenizer()
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
    tok = ByteTokenizer()
    rng = np.random.default_rng(0)
    ids = passkey_training_example(tok, 128, rng)
    assert ids.shape == (128,)
    text = tok.decode(ids)
    key = text.split("The pass key is ")[1].split(".")[0]
    assert text.rstrip("\ufffd").endswith(f"The pass key is {key}.")
