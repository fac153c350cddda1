"""`models.generate` through transformers' `generate` against the naive reference (conftest), on every tiny family."""

import pytest
import torch

from greyglass.models.generate import generate, generate_ids, generate_text
from greyglass.models.tiny import TINY_FAMILIES, tiny_model

PROMPT = "The quick brown fox jumps over"


def assert_same(new, ref, top=0):
    """Same tokens, finish and log-probs (to 1e-5) as the reference; the top alternatives are its top-k."""
    assert new.ids == ref.ids and new.finish == ref.finish
    chosen = ref.logprobs[torch.arange(len(ref.ids)), torch.tensor(ref.ids, dtype=torch.long)]
    assert new.logprobs == pytest.approx(chosen.tolist(), abs=1e-5)
    if top:
        assert [[i for i, _ in alts] for alts in new.top] == ref.logprobs.topk(top).indices.tolist()


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_greedy_tokens_and_log_probs_equal_the_naive_loop(family, naive_decode):
    lm = tiny_model(family)
    ids = lm.tokenizer(PROMPT).input_ids
    ref = naive_decode(lm, ids, 24)
    new = generate_ids(lm, ids, 24, top=3, prompt_logprobs=True)
    assert_same(new, ref, top=3)
    assert torch.allclose(new.prompt_logprobs, ref.prompt_logprobs, atol=1e-5)
    # a stop string from the middle of the greedy text ends generation on the token that completes it
    text = lm.tokenizer.decode(ref.ids)
    stop = (text[8:11], "never there")
    stopped = generate_ids(lm, ids, 24, stop=stop)
    assert_same(stopped, naive_decode(lm, ids, 24, stop=stop))
    assert stopped.finish == "stop" and len(stopped.ids) < 24
    assert generate_text(lm, PROMPT, True, 24, stop=stop) == lm.tokenizer.decode(stopped.ids)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_sampling_is_temperature_only_and_fixed_by_the_seed(family, naive_decode):
    lm = tiny_model(family)
    ids = lm.tokenizer(PROMPT).input_ids
    state = torch.get_rng_state()
    # transformers would sample from the top 50 tokens unless told otherwise; the reference uses all of them
    for seed in (0, 1):
        assert_same(generate_ids(lm, ids, 20, temperature=1.3, seed=seed), naive_decode(lm, ids, 20, 1.3, seed))
    assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is left alone
    a, b = (generate_text(lm, PROMPT, True, 20, temperature=1.3, seed=s) for s in (0, 1))
    assert a != b and a == generate_text(lm, PROMPT, True, 20, temperature=1.3, seed=0)


def test_stop_strings_look_at_the_generated_text_only(naive_decode):
    lm = tiny_model("gpt2")  # greedy: "r" again and again
    prompt = "The quick brown fox jumps over"  # its "r" with two new ones would already hold "rrr"
    ids = lm.tokenizer(prompt).input_ids
    assert lm.tokenizer.decode(generate_ids(lm, ids, 6).ids) == "rrrrrr"
    out = generate_ids(lm, ids, 6, stop=("rrr",))
    assert lm.tokenizer.decode(out.ids) == "rrr" and out.finish == "stop"
    assert_same(out, naive_decode(lm, ids, 6, stop=("rrr",)))


def test_edge_lengths_and_a_stop_on_the_last_token(tiny_llama, naive_decode):
    ids = tiny_llama.tokenizer(PROMPT).input_ids
    none = generate_ids(tiny_llama, ids, 0, prompt_logprobs=True)
    assert (none.ids, none.finish) == ([], "length")
    assert torch.allclose(none.prompt_logprobs, naive_decode(tiny_llama, ids, 0).prompt_logprobs, atol=1e-5)
    assert generate_text(tiny_llama, PROMPT, True, 0) == ""
    one = generate_ids(tiny_llama, ids[:1], 3, prompt_logprobs=True)  # BOS alone: nothing before the last token
    assert one.prompt_logprobs.shape[0] == 1 and one.ids == naive_decode(tiny_llama, ids[:1], 3).ids
    greedy = generate_ids(tiny_llama, ids, 6)
    last = tiny_llama.tokenizer.decode(greedy.ids[-1:])
    assert generate_ids(tiny_llama, ids, 6, stop=(last,)).finish == "stop"  # not "length", though 6 tokens ran


def test_batched_greedy_replies_equal_one_at_a_time(tiny_llama):
    prompts = [PROMPT, "Hi", "A somewhat longer prompt, padded on the left"]
    assert generate(tiny_llama, prompts, 12) == [generate_text(tiny_llama, p, True, 12) for p in prompts]


def test_generation_passes_the_cache_by_its_current_name(tiny_llama, cache_deprecations):
    with cache_deprecations() as seen:
        generate_ids(tiny_llama, tiny_llama.tokenizer(PROMPT).input_ids, 5, stop=("x",), prompt_logprobs=True)
        generate(tiny_llama, [PROMPT], 5)
    assert seen == []
