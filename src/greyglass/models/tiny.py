"""Tiny randomly initialised models of each supported family, for fast tests.

They have the real architectures (same block code as the full models) with a handful of
small layers, and a byte-level tokenizer (256 byte tokens plus BOS/EOS/PAD) built in memory,
so tests need no files. A chat template is attached when `chat=True`.
"""

from __future__ import annotations

from typing import Literal

import torch

from .lm import LoadedModel

TinyFamily = Literal["llama", "gemma3", "gpt2", "gpt_neox", "qwen2"]
TINY_FAMILIES: tuple[TinyFamily, ...] = ("llama", "gemma3", "gpt2", "gpt_neox", "qwen2")

_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def byte_tokenizer(add_bos: bool = True):
    """A 259-token byte-level BPE tokenizer with no merges (one token per byte)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    specials = ["<bos>", "<eos>", "<pad>"]
    for s in specials:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def _config(family: TinyFamily, vocab: int, n_layers: int, d_model: int):
    import transformers as tf

    common = dict(vocab_size=vocab, bos_token_id=256, eos_token_id=257, pad_token_id=258)
    if family == "gpt2":
        return tf.GPT2Config(n_layer=n_layers, n_embd=d_model, n_head=4, n_positions=256, **common)
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(
            num_hidden_layers=n_layers, hidden_size=d_model, num_attention_heads=4,
            intermediate_size=4 * d_model, max_position_embeddings=256, **common,
        )
    cls = {"llama": tf.LlamaConfig, "qwen2": tf.Qwen2Config, "gemma3": tf.Gemma3TextConfig}[family]
    extra = {"head_dim": d_model // 4, "sliding_window": 16} if family == "gemma3" else {}
    return cls(
        num_hidden_layers=n_layers, hidden_size=d_model, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=2 * d_model, max_position_embeddings=256,
        **extra, **common,
    )


def tiny_model(
    family: TinyFamily = "llama",
    n_layers: int = 4,
    d_model: int = 64,
    seed: int = 0,
    chat: bool = False,
) -> LoadedModel:
    """A randomly initialised model of `family` in float32 on the CPU, ready for hooks."""
    from transformers import AutoModelForCausalLM

    tok = byte_tokenizer()
    if chat:
        tok.chat_template = _CHAT_TEMPLATE
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_config(family, len(tok), n_layers, d_model))
    model.eval()
    model.requires_grad_(False)
    return LoadedModel.wrap(
        model, tok, spec=f"tiny-{family}", name=f"tiny-{family}", source="random init",
        sha256=f"random-seed-{seed}",
    )
