"""Passkey and RULER-style scoring, prompts, greedy decoding; sliding-window perplexity."""
import numpy as np
import pytest
import torch

from longrope.data.tokenizer import byte_tokenizer
from longrope.evaluation.perplexity import perplexity, sliding_perplexity
from longrope.evaluation.retrieval import (NEEDLE_TASKS, first_integer, greedy, needle_example, needle_score,
                                         passkey_accuracy, passkey_correct, passkey_trials, string_match_all)


@pytest.mark.parametrize("output, key, correct", [
    (" 31415. The grass", 31415, True),
    ("31415", 31415, True),
    (" 031415.", 31415, True),       # the integer, not the digits
    (" 3141. 31415", 31415, False),  # only the first integer counts
    (" 31415926", 31415, False),
    (" the key", 31415, False),
    ("", 31415, False),
])
def test_passkey_scoring(output, key, correct):
    assert passkey_correct(output, key) is correct


def test_first_integer():
    assert first_integer("abc 12 34") == 12 and first_integer("none") is None


@pytest.mark.parametrize("output, expected, score", [
    ("The numbers are 123456 and 654321.", ["123456", "654321"], 1.0),
    ("The numbers are 123456.", ["123456", "654321"], 0.5),
    ("nothing", ["123456"], 0.0),
    ("they are ABCDE, fghij", ["abcde", "FGHIJ", "KLMNO"], 2 / 3),  # case-insensitive, as RULER
])
def test_string_match_all(output, expected, score):
    assert string_match_all(output, expected) == pytest.approx(score)


@pytest.mark.parametrize("task", NEEDLE_TASKS)
def test_needle_prompts_fit_and_hold_every_answer(task):
    tok = byte_tokenizer()
    example = needle_example(task, tok, 600, np.random.default_rng(0))
    assert 560 <= len(example.prompt) <= 600  # the haystack fills the length
    text = tok.decode(example.prompt)
    assert all(answer in text for answer in example.expected)  # the needles carry what is asked for
    assert example.max_new_tokens >= len(tok.encode(" ".join(example.expected)))
    again = needle_example(task, tok, 600, np.random.default_rng(0))
    assert again == example
    with pytest.raises(ValueError, match="needs more than 50 tokens"):
        needle_example(task, tok, 50, np.random.default_rng(0))


def test_passkey_trials_are_seeded_and_place_the_needle_at_each_depth():
    tok = byte_tokenizer()
    trials = list(passkey_trials(tok, 300, [0.0, 1.0], 3, seed=7, with_task=False))
    assert [d for d, _, _ in trials] == [0.0] * 3 + [1.0] * 3
    assert len({k for _, k, _ in trials}) == 6 and all(10000 <= k < 100000 for _, k, _ in trials)
    assert [k for _, k, _ in trials] == [k for _, k, _ in passkey_trials(tok, 300, [0.0, 1.0], 3, seed=7, with_task=False)]
    early, late = tok.decode(trials[0][2].prompt), tok.decode(trials[3][2].prompt)
    assert early.index(str(trials[0][1])) < 30 < len(late) - 100 < late.index(str(trials[3][1]))


def test_greedy_decoding_equals_transformers_generate(tiny_model):
    prompt = list(range(40, 80))
    ids = torch.tensor([prompt])
    expected = tiny_model.generate(ids, max_new_tokens=6, do_sample=False, attention_mask=torch.ones_like(ids))
    assert greedy(tiny_model, prompt, 6) == expected[0, len(prompt):].tolist()


def test_sliding_window_scores_every_token_once(tiny_model):
    documents = np.random.default_rng(0).integers(0, 258, (2, 100))
    result = sliding_perplexity(tiny_model, documents, window=32, stride=16)
    assert result.tokens == 2 * 99 and result.n_samples == 2
    whole = sliding_perplexity(tiny_model, documents[:, :32], window=32, stride=32)
    assert whole.ppl == pytest.approx(perplexity(tiny_model, documents[:, :32]).ppl, rel=1e-9)
    with pytest.raises(ValueError, match="stride must lie in"):
        sliding_perplexity(tiny_model, documents, window=32, stride=64)


def test_sliding_perplexity_of_a_uniform_model_is_the_vocabulary_size(tiny_model):
    with torch.no_grad():
        tiny_model.lm_head.weight.zero_()  # tied: every logit is 0, every token has probability 1/258
    documents = np.random.default_rng(0).integers(0, 258, (1, 90))
    assert sliding_perplexity(tiny_model, documents, window=40, stride=10).ppl == pytest.approx(258, rel=1e-5)


def test_a_progress_bar_shows_on_stderr_and_changes_no_result(tiny_model, capsys):
    """The scripts label a bar for each evaluation and retrieval loop; unlabelled (the default), none is drawn."""
    windows = np.random.default_rng(0).integers(0, 258, (3, 40))
    tok = byte_tokenizer()
    plain = (perplexity(tiny_model, windows).unit_nll, sliding_perplexity(tiny_model, windows, 20, 10).unit_nll,
             passkey_accuracy(tiny_model, tok, 300, [0.0, 1.0], 2, seed=3),
             needle_score(tiny_model, tok, "niah_single", 200, 2, seed=3))
    assert capsys.readouterr().err == ""
    labelled = (perplexity(tiny_model, windows, progress="ppl 40").unit_nll,
                sliding_perplexity(tiny_model, windows, 20, 10, progress="sliding 40").unit_nll,
                passkey_accuracy(tiny_model, tok, 300, [0.0, 1.0], 2, seed=3, progress="passkey 300"),
                needle_score(tiny_model, tok, "niah_single", 200, 2, seed=3, progress="niah_single 200"))
    err = capsys.readouterr().err
    assert all(label in err for label in ("ppl 40", "sliding 40", "passkey 300", "niah_single 200")), err
    assert np.array_equal(plain[0], labelled[0]) and np.array_equal(plain[1], labelled[1])
    assert plain[2:] == labelled[2:]
