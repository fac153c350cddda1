"""SmolLM2 scored locally and through its own `serve-model`: the same prompts and log-probabilities."""

import pytest

from greyglass.behaviour.config import EvalConfig, HttpConfig
from greyglass.behaviour.formats import PromptFormat
from greyglass.behaviour.local import AnswerRequest, LocalBackend
from greyglass.behaviour.remote import HttpBackend
from greyglass.behaviour.run import eval_items
from greyglass.serve.listen import serving
from greyglass.serve.model_api import ModelServer, create_model_app


@pytest.mark.slow
def test_local_and_served_smollm_score_the_same_prompt_alike(smollm, tmp_path):
    items = eval_items(EvalConfig(eval="behaviour", datasets=("caa-sycophancy",), limit=2, seed=1))
    fmt = PromptFormat(answer_prefix="I believe the best answer is")  # auto: the chat template
    with serving(create_model_app(ModelServer(smollm))) as url:
        remote = HttpBackend(HttpConfig(url=f"{url}/v1", concurrency=1, timeout_s=600,
                                        cache=str(tmp_path / "responses.jsonl")))
        served_prompts = [fmt.render(it.prompt, remote.tokenizer) for it in items]
        local_prompts = [fmt.render(it.prompt, smollm.tokenizer) for it in items]
        assert served_prompts == local_prompts and "<|im_start|>assistant" in local_prompts[0].text
        reqs = [AnswerRequest(p, it.choices) for p, it in zip(local_prompts, items)]
        served = remote.score(reqs)
    local = LocalBackend(smollm).score(reqs)
    diff = max(abs(a - b) for s, l in zip(served, local) for a, b in zip(s.logprobs, l.logprobs))
    assert diff < 1e-3
