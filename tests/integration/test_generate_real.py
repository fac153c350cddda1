"""`models.generate` on SmolLM2 (multi-byte BPE tokens) against the naive reference loop (conftest)."""

import pytest
import torch

from greyglass.models.generate import generate_ids, user_prompt


@pytest.mark.slow
def test_smollm_greedy_stops_and_log_probs_equal_the_naive_loop(smollm, naive_decode):
    ids = smollm.tokenizer(user_prompt(smollm, "Name three rivers in Europe."), add_special_tokens=False).input_ids
    ref = naive_decode(smollm, ids, 16)
    new = generate_ids(smollm, ids, 16, prompt_logprobs=True)
    assert new.ids == ref.ids
    chosen = ref.logprobs[torch.arange(len(ref.ids)), torch.tensor(ref.ids)]
    assert new.logprobs == pytest.approx(chosen.tolist(), abs=1e-4)  # a quantised model: larger activations
    assert torch.allclose(new.prompt_logprobs, ref.prompt_logprobs, atol=1e-4)
    text = smollm.tokenizer.decode(ref.ids)
    pieces = smollm.tokenizer.convert_ids_to_tokens(ref.ids)
    assert any(len(p) > 2 for p in pieces[3:]), pieces
    stop = (text[len(text) // 2 - 1 : len(text) // 2 + 2],)  # three characters inside a token ("uro" of " Europe")
    stopped = generate_ids(smollm, ids, 16, stop=stop)
    want = naive_decode(smollm, ids, 16, stop=stop)
    assert (stopped.ids, stopped.finish) == (want.ids, want.finish) and stopped.finish == "stop"
