"""Shared fixtures: tiny random models (unit; also saved, with an SAE on one; one with planted outlier rows), the real default
model (integration), the naive decoding reference, and a recorder of transformers' messages
about the old cache name."""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from typing import NamedTuple

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_llama():
    from greyglass.models.tiny import tiny_model

    return tiny_model("llama")


class Loud(NamedTuple):
    lm: object
    token: int


@pytest.fixture(scope="session")
def loud_llama():
    """The tiny llama's weights with the embedding of "v" 200 times too long, so every "v" is an outlier row in the
    residual stream (as some real models give a few tokens tens of times the median norm)."""
    from greyglass.models.tiny import tiny_model

    lm = tiny_model("llama")
    v = lm.tokenizer.convert_tokens_to_ids("v")
    lm.model.get_input_embeddings().weight[v] *= 200
    return Loud(lm, v)


@pytest.fixture(scope="session")
def tiny_llama_folder(tiny_llama, tmp_path_factory):
    """The tiny llama saved as a local Hugging Face folder, as commands given `--model` read it."""
    folder = tmp_path_factory.mktemp("tiny_llama")
    tiny_llama.model.save_pretrained(folder)
    tiny_llama.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_sae_folder(tiny_llama_folder, tmp_path):
    """A saved untrained TopK SAE (k 4, 96 latents) on the tiny llama's `blocks.1.hook_resid_post`,
    its cfg.json naming that model's folder, so commands load the model from the SAE alone."""
    from greyglass.sae.architectures import create_sae
    from greyglass.sae.config import SAEConfig, TopKConfig
    from greyglass.sae.io import save_sae

    sae = create_sae(SAEConfig(arch=TopKConfig(k=4), d_in=64, d_sae=96, hook_name="blocks.1.hook_resid_post",
                               model_name=str(tiny_llama_folder)), seed=0)
    sae.initialise_from(torch.randn(64, 64, generator=torch.Generator().manual_seed(0)))
    return save_sae(sae.eval(), tmp_path / "sae")


@pytest.fixture(scope="session")
def smollm():
    """The real embedded default model (SmolLM2-135M-Instruct), loaded once per session."""
    from greyglass.models.loader import load_model

    return load_model("smollm2-135m-instruct")


@pytest.fixture
def write_lines(tmp_path):
    """Write lines to a file under tmp_path and return its path."""

    def write(name: str, lines: list[str]):
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return path

    return write



@contextmanager
def _cache_deprecations():
    """Collects what transformers says, inside the block, about the old `past_key_values` name.

    The keyword is announced with a FutureWarning (which pyproject's pytest settings filter
    out, so here every filter is open); reading `.past_key_values` off an output is announced
    once per process through transformers' logger, so that once-cache is cleared first.
    """
    from transformers.utils import logging as hf_logging

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler, logger = Collect(), hf_logging.get_logger("transformers")
    hf_logging.warning_once.cache_clear()
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield seen
        seen += [str(w.message) for w in caught]
    finally:
        logger.removeHandler(handler)
    seen[:] = [m for m in seen if "past_key_values" in m]


@pytest.fixture
def cache_deprecations():
    """`with cache_deprecations() as seen: ...`, then `seen` holds transformers' messages about `past_key_values`."""
    return _cache_deprecations


class NaiveDecoded(NamedTuple):
    ids: list[int]
    logprobs: torch.Tensor  # [new, vocab]
    finish: str
    prompt_logprobs: torch.Tensor  # [prompt_len, vocab]


def _naive_decode(lm, prompt_ids: list[int], max_tokens: int, temperature: float = 0.0, seed: int = 0,
                  stop: tuple[str, ...] = ()) -> NaiveDecoded:
    """The reference for `models.generate`: one full forward pass per new token, no cache, no
    transformers `generate`; stops at the tokenizer's EOS or once the whole decoded output holds a
    stop string; samples from softmax(logits / temperature) with a CPU generator seeded by `seed`."""
    gen = torch.Generator().manual_seed(seed)
    ids, steps, finish = list(prompt_ids), [], "length"
    with torch.inference_mode():
        prompt_logprobs = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        for _ in range(max_tokens):
            logp = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
            if temperature > 0:
                token = int(torch.multinomial(torch.softmax(logp / temperature, -1), 1, generator=gen))
            else:
                token = int(logp.argmax())
            ids.append(token)
            steps.append(logp)
            new = ids[len(prompt_ids):]
            if token == lm.tokenizer.eos_token_id or any(s in lm.tokenizer.decode(new) for s in stop):
                finish = "stop"
                break
    logprobs = torch.stack(steps) if steps else torch.empty(0, prompt_logprobs.shape[1])
    return NaiveDecoded(ids[len(prompt_ids):], logprobs, finish, prompt_logprobs)


@pytest.fixture
def naive_decode():
    """`naive_decode(lm, prompt_ids, max_tokens, temperature=0, seed=0, stop=())` -> NaiveDecoded."""
    return _naive_decode
