"""Token stores (longrope.data.tokens): documents in, the same ids out as a memory map; a failed write leaves none."""
import hashlib
import json

import numpy as np
import pytest

from longrope.data.corpus import encode_documents
from longrope.data.tokenizer import Tokenizer, byte_tokenizer, load_tokenizer
from longrope.data.tokens import TokenStore, load_tokens, token_dtype, write_store

TEXTS = ["ab", "Emma Woodhouse, handsome, clever 漢字", "", "c" * 50]


@pytest.fixture
def tokenizer(tmp_path):
    byte_tokenizer().save(tmp_path / "tokenizer")
    return load_tokenizer(tmp_path / "tokenizer")


def word_tokenizer(vocab: dict[str, int]) -> Tokenizer:
    """Whitespace-separated words of `vocab`; documents end with </s>."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers

    words = HFTokenizer(models.WordLevel({"<s>": 0, "</s>": 1, "[UNK]": 2, **vocab}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return Tokenizer(words, {"bos_token": "<s>", "eos_token": "</s>"})


def test_documents_come_back_as_encode_documents_lays_them_out(tmp_path, tokenizer):
    """One text is one document, BOS doc EOS, whatever the batches (here one character of text each)."""
    store = write_store(tmp_path / "store", tokenizer, iter(TEXTS), "four texts", batch_chars=1)
    assert np.array_equal(store.tokens, encode_documents(tokenizer, TEXTS))
    assert len(store) == len(TEXTS)
    for i, text in enumerate(TEXTS):
        assert store[i].tolist() == [tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eos_id]
    assert store.documents[0] == 0 and np.diff(store.documents).tolist() == [len(t.encode()) + 2 for t in TEXTS]


def test_ids_are_uint16_when_the_vocabulary_fits_else_uint32(tmp_path):
    assert token_dtype(258) == np.uint16 and token_dtype(2**16) == np.uint16 and token_dtype(2**16 + 1) == np.uint32
    large = word_tokenizer({f"w{i}": i for i in range(3, 70_000)})
    store = write_store(tmp_path / "large", large, ["w65536 w69999 w7"], "three words")
    assert store.tokens.dtype == np.uint32 and store.tokens.tolist() == [65536, 69999, 7, 1]
    assert write_store(tmp_path / "small", byte_tokenizer(), ["ab"], "ab").tokens.dtype == np.uint16


def test_jobs_read_a_read_only_memory_map(tmp_path, tokenizer):
    write_store(tmp_path / "store", tokenizer, TEXTS, "four texts")
    tokens = load_tokens(tmp_path / "store")
    assert isinstance(tokens, np.memmap) and not tokens.flags.writeable
    assert np.array_equal(tokens, encode_documents(tokenizer, TEXTS))
    with pytest.raises(FileNotFoundError, match="is not a token store: it has no meta.json"):
        load_tokens(tmp_path)


def test_metadata_names_the_tokenizer_the_source_and_the_counts(tmp_path, tokenizer):
    store = write_store(tmp_path / "store", tokenizer, TEXTS, "four texts")
    sha256 = hashlib.sha256((tmp_path / "tokenizer" / "tokenizer.json").read_bytes()).hexdigest()
    assert json.loads((tmp_path / "store" / "meta.json").read_text()) == store.meta == {
        "tokenizer_sha256": sha256, "source": "four texts", "documents": 4, "tokens": len(store.tokens),
        "dtype": "uint16", "vocab_size": 258, "max_id": int(store.tokens.max())}
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["documents.npy", "meta.json", "tokens.bin"]


def test_a_failed_write_leaves_no_store(tmp_path, tokenizer):
    """A source that fails half-way leaves nothing at the store's place; what a killed write left (a .partial
    folder) is no store, and the next write replaces it."""
    def failing():
        yield from TEXTS
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        write_store(tmp_path / "store", tokenizer, failing(), "failing", batch_chars=1)
    assert list(tmp_path.iterdir()) == [tmp_path / "tokenizer"]

    killed = tmp_path / "store.partial"
    killed.mkdir()
    (killed / "tokens.bin").write_bytes(b"\0" * 6)
    with pytest.raises(FileNotFoundError, match="is not a token store"):
        TokenStore.open(killed)
    write_store(tmp_path / "store", tokenizer, TEXTS, "four texts")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "tokenizer"]
    assert write_store(tmp_path / "store", tokenizer, ["ab"], "ab").meta["documents"] == 1  # replaces the older store
    with pytest.raises(FileExistsError, match="tokenizer exists and is not a token store: not replacing it"):
        write_store(tmp_path / "tokenizer", tokenizer, ["ab"], "ab")


def test_bad_input_is_refused_with_one_clear_error_and_no_store(tmp_path, tokenizer):
    with pytest.raises(ValueError, match=r"token store .*empty: its source is empty \(no books\)"):
        write_store(tmp_path / "empty", tokenizer, [], "no books")
    # A tokenizer.json whose ids leave gaps: 'far' is id 300 in a vocabulary of 4.
    sparse = word_tokenizer({"far": 300})
    with pytest.raises(ValueError, match=r"token store .*sparse: token id 300 is outside the tokenizer's "
                                         r"vocabulary of 4"):
        write_store(tmp_path / "sparse", sparse, ["far"], "one word")
    assert list(tmp_path.iterdir()) == [tmp_path / "tokenizer"]


def test_a_store_with_parts_that_disagree_is_refused(tmp_path, tokenizer):
    write_store(tmp_path / "store", tokenizer, TEXTS, "four texts")
    with open(tmp_path / "store" / "tokens.bin", "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(ValueError, match="tokens.bin, documents.npy and meta.json disagree"):
        TokenStore.open(tmp_path / "store")


def test_a_store_the_models_vocabulary_cannot_hold_is_refused(tmp_path, tokenizer):
    """A store written with another tokenizer than the model's: its largest id (meta.json's max_id) is checked
    against the model's embeddings before any window is read."""
    store = write_store(tmp_path / "store", tokenizer, TEXTS, "four texts")
    largest = int(store.tokens.max())
    assert store.check_vocabulary(largest + 1) is store
    with pytest.raises(ValueError, match=rf"token store .*store holds token id {largest}, outside the model's "
                                         rf"vocabulary of {largest}: it was written with another tokenizer"):
        TokenStore.open(tmp_path / "store").check_vocabulary(largest)


def test_the_benchmark_fine_tunes_on_a_store_as_the_fine_tune_job_draws_from_it(tmp_path, tokenizer):
    """benchmark_tokenize's fine-tuning mode, on 1 MiB of the books: the fine-tune job's chunk check and loop
    (forward, backward, AdamW) on the store, each step's loss logged, the store's pages read through its map."""
    import subprocess
    import sys

    from longrope.tools.benchmark_tokenize import bundled_books, repeated

    store = write_store(tmp_path / "store", tokenizer, repeated(bundled_books(), 1), "1 MiB of the books")
    command = [sys.executable, "-m", "longrope.tools.benchmark_tokenize", "--child", "finetune", "--mb", "1",
               "--threads", "1", "--tokenizer", str(tmp_path / "tokenizer"), "--work-dir", str(tmp_path),
               "--seq-len", "128", "--steps", "2"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.splitlines()[-1])
    assert figures["store_tokens"] == store.meta["tokens"] and len(figures["losses"]) == 2
    assert all(np.isfinite(figures["losses"])) and figures["peak_mb"] >= figures["before_mb"] > 0

    write_store(tmp_path / "store", tokenizer, ["ab"], "ab")  # too small for one chunk of 128 + 1 tokens
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "the training store holds 0 chunks of 129 tokens" in done.stderr
