"""Evals on the real embedded models: the prefix-shared scorer, sycophancy and self-awareness runs."""

import json

import pytest
import torch

from greyglass.directions import Direction
from greyglass.behaviour.config import EvalConfig
from greyglass.behaviour.formats import PromptFormat
from greyglass.behaviour.local import AnswerRequest, LocalBackend, score_naive
from greyglass.behaviour.run import eval_items, run_eval
from greyglass.models.hooks import run_to_sites
from greyglass.models.loader import load_model


def test_prefix_shared_equals_naive_on_smollm(smollm):
    items = eval_items(EvalConfig(eval="sycophancy", limit=3))[:4] + eval_items(EvalConfig(eval="advanced-ai-risk", limit=2))
    fmt = PromptFormat(answer_prefix="I believe the best answer is")
    reqs = [AnswerRequest(fmt.render(it.prompt, smollm.tokenizer), it.choices) for it in items]
    fast, slow = LocalBackend(smollm).score(reqs), score_naive(smollm, reqs)
    diff = max(abs(a - b) for f, s in zip(fast, slow) for a, b in zip(f.logprobs, s.logprobs))
    assert diff < 1e-3
    # a real instruct model puts most of its next-token mass on an answer letter here
    assert all(max(f.logprobs) > -6 for f in fast)


def test_sycophancy_on_smollm_with_a_probe(smollm, tmp_path):
    # a mean-difference direction between agreeing and disagreeing answers, made here from CAA rows
    site = "blocks.15.hook_resid_post"
    train = eval_items(EvalConfig(eval="behaviour", datasets=("caa-sycophancy",), limit=8, seed=7))
    acts = {True: [], False: []}
    for it in train:
        for answer in it.choices:
            text = PromptFormat().render(it.prompt, smollm.tokenizer).text + answer
            ids = smollm.tokenizer(text, return_tensors="pt").input_ids
            acts[answer == it.answer_matching_behavior].append(run_to_sites(smollm, ids, [site])[site][0, -1])
    vector = torch.stack(acts[True]).mean(0) - torch.stack(acts[False]).mean(0)
    direction = Direction(vector, site, "mean_diff")
    cfg = EvalConfig(eval="sycophancy", limit=6, batch_size=4)
    results = run_eval(LocalBackend(smollm, probe=direction), cfg, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    assert len(rows) == results.n_items and all(isinstance(r["probe"], float) for r in rows)
    assert results.probe.site == site and results.probe.kind == "mean_diff" and 0 <= results.probe.auroc.value <= 1
    for name in ("caa-sycophancy", "sycophancy-political-liberal-bio", "sycophancy-political-conservative-bio"):
        with_bio, control = results.datasets[name], results.controls[name]
        assert with_bio.n == 2 and control.no_bio.n == 2
        assert 0 < with_bio.p_match.value < 1
    assert rows[0]["prompt"].startswith("<|im_start|>system")
    # every question asked in both answer orders: same question cluster, the matching answer on the other letter
    swapped = {r["unswapped_id"]: r for r in rows if r["order"] == "swapped"}
    originals = [r for r in rows if r["order"] == "original"]
    assert len(swapped) == len(originals) == len(rows) // 2
    for r in originals:
        twin = swapped[r["id"]]
        assert twin["cluster"] == r["cluster"] and twin["prompt"] != r["prompt"]
        assert twin["answer_matching_behavior"] != r["answer_matching_behavior"]
    lean = results.all.p_first_answer
    assert lean.lo < lean.value < lean.hi


@pytest.mark.slow
def test_self_awareness_instruct_vs_base(smollm, tmp_path):
    gemma = load_model("gemma3-270m")
    cfg = EvalConfig(eval="advanced-ai-risk", datasets=("mwe-human-self-awareness-general-ai",
                                                        "mwe-lm-self-awareness-general-ai"), limit=8)
    out = {}
    for lm in (smollm, gemma):
        out[lm.name] = run_eval(LocalBackend(lm), cfg, tmp_path / lm.name, progress=False)
    base_prompt = json.loads((tmp_path / "gemma3-270m" / "items.jsonl").read_text().splitlines()[0])["prompt"]
    assert base_prompt.startswith("\n\nHuman: ") and base_prompt.endswith("\n\nAssistant:")
    for res in out.values():
        assert set(res.written_by) == {"human", "lm"} and res.all.n == 8
    # the prefix-shared scorer on a model with sliding-window layers (window 512 > these prompts)
    items = eval_items(cfg)[:3]
    reqs = [AnswerRequest(PromptFormat(few_shot=2).render(it.prompt, gemma.tokenizer), it.choices) for it in items]
    fast, slow = LocalBackend(gemma).score(reqs), score_naive(gemma, reqs)
    assert max(abs(a - b) for f, s in zip(fast, slow) for a, b in zip(f.logprobs, s.logprobs)) < 1e-3


@pytest.mark.slow
def test_cot_faithfulness_on_smollm(smollm, tmp_path):
    from greyglass.behaviour.config import CotConfig
    from greyglass.behaviour.cot import run_cot

    res = run_cot(smollm, CotConfig(limit=1, max_cot_tokens=48), tmp_path / "cot", progress=False).all
    row = json.loads((tmp_path / "cot" / "items.jsonl").read_text())
    assert row["chain"].strip() and row["early"]["1.0"] == row["answer"] is not None
    assert res.early_answering["1.0"].share.value == 1.0 and 0 <= res.early_answering_aoc.value <= 1


@pytest.mark.slow
def test_smollm_as_judge_of_labelled_pressure_turns(smollm, tmp_path):
    """The embedded model behind the OpenAI-compatible server judges labelled turns; every turn is counted once."""
    from pathlib import Path

    from greyglass.behaviour.config import HttpConfig
    from greyglass.behaviour.pressure import classifier_accuracy, read_labelled_turns
    from greyglass.behaviour.remote import HttpBackend
    from greyglass.serve.listen import serving
    from greyglass.serve.model_api import ModelServer, create_model_app

    turns = read_labelled_turns(Path(__file__).resolve().parent.parent / "data" / "pressure_turns.jsonl")
    some = [t for t in turns if t["step"] == "report"][:3] + [t for t in turns if t["step"] == "reply"][:3]
    with serving(create_model_app(ModelServer(smollm))) as url:
        judge = HttpBackend(HttpConfig(url=f"{url}/v1", cache=str(tmp_path / "judge.jsonl")))
        acc = classifier_accuracy(some, judge)
    for rule in ("hid", "doubled_down"):
        part = acc[rule]["judge"]
        answered = part["accuracy"]["n"] if part["accuracy"] else 0
        assert answered + part["no_verdict"] == 3
    assert judge.sent == 6  # one request per turn, nothing asked twice
