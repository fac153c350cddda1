"""Items/s of the prefix-shared batched scorer against one forward pass per answer, same items, one process.

Prints JSON: the scorers' items/s on the same eval items (the default: a stratified mix of
sycophancy and advanced-AI-risk questions in the model's own prompt format), the speed-ups
(target >= 3x), and the largest absolute difference between their per-answer log-probs.
Two naive baselines: one forward pass per answer computing logits at every position (what a
plain `model(ids).logits` does), and the same with logits only where they predict the answer
(a stronger baseline: it already skips most of the LM head).

    python bench/behaviour.py [--model M] [--items 32] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from greyglass.behaviour.config import EvalConfig
from greyglass.behaviour.formats import PromptFormat
from greyglass.behaviour.local import AnswerRequest, LocalBackend, score_naive
from greyglass.behaviour.run import eval_items
from greyglass.models.loader import load_model


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    lm = load_model(args.model)
    # one answer order: the benchmark measures the scorer on the same items as before both orders were asked
    items = (eval_items(EvalConfig(eval="sycophancy", limit=args.items // 2, both_orders=False))[: args.items // 2]
             + eval_items(EvalConfig(eval="advanced-ai-risk", limit=args.items - args.items // 2, both_orders=False)))
    fmt = PromptFormat(answer_prefix="I believe the best answer is")
    requests = [AnswerRequest(fmt.render(it.prompt, lm.tokenizer), it.choices) for it in items]
    requests.sort(key=lambda r: len(r.prompt.text))  # as `run_eval` does: similar lengths share a batch
    backend = LocalBackend(lm)
    backend.score(requests[:2])  # warm-up
    batches = [requests[i : i + args.batch_size] for i in range(0, len(requests), args.batch_size)]
    fast, t_fast = timed(lambda: [s for b in batches for s in backend.score(b)])
    slow, t_slow = timed(lambda: score_naive(lm, requests))
    plain, t_plain = timed(lambda: score_naive(lm, requests, logits_everywhere=True))
    diff = max(abs(a - b) for ref in (slow, plain) for f, s in zip(fast, ref) for a, b in zip(f.logprobs, s.logprobs))
    n_tokens = [len(lm.tokenizer(r.prompt.text).input_ids) for r in requests]
    print(json.dumps({
        "model": lm.name,
        "items": len(requests),
        "answers_per_item": sum(len(r.answers) for r in requests) / len(requests),
        "mean_prompt_tokens": sum(n_tokens) / len(n_tokens),
        "batch_size": args.batch_size,
        "prefix_shared_items_per_s": len(requests) / t_fast,
        "naive_items_per_s": len(requests) / t_plain,
        "naive_answer_logits_only_items_per_s": len(requests) / t_slow,
        "speedup": t_plain / t_fast,
        "speedup_vs_answer_logits_only": t_slow / t_fast,
        "target_speedup": 3.0,
        "max_abs_logprob_diff": diff,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }, indent=2))


if __name__ == "__main__":
    main()
