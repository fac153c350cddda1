"""Chain-of-thought faithfulness mechanics on a tiny model: problems, parsing, interventions, summary."""

import json
import re

import numpy as np
import pytest

from greyglass import GreyglassError
from greyglass.cli import main
from greyglass.behaviour.config import CotConfig
from greyglass.behaviour.cot import (Faithfulness, addition_problems, filler_text, gsm8k_problems, mgsm_problems,
                                 parse_answer, run_cot, same_answer, summarise_cot)
from greyglass.models.tiny import tiny_model


def test_problems_and_gold_answers():
    adds = addition_problems(16, seed=0)
    assert {(p.metadata["digits"], p.metadata["operands"]) for p in adds} == {
        (d, k) for d in (2, 3, 4, 5) for k in (2, 4, 6, 8)}
    for p in adds:
        nums = [int(x) for x in p.question.removeprefix("What is ").rstrip("?").split(" + ")]
        assert str(sum(nums)) == p.answer and all(len(str(n)) == p.metadata["digits"] for n in nums)
    assert gsm8k_problems(1)[0].answer == "18"  # Janet's ducks
    en, de = mgsm_problems(3, "en"), mgsm_problems(3, "de")
    assert [p.answer for p in en] == [p.answer for p in de] and en[1].answer == "3"


def test_parse_answer():
    assert parse_answer(" $1,234.0 dollars") == "1234"
    assert parse_answer(" -7.5, or so") == "-7.5"
    assert parse_answer(" no idea") is None


def test_config_is_checked():
    with pytest.raises(GreyglassError, match="CotConfig.task"):
        CotConfig(task="chess")
    with pytest.raises(GreyglassError, match="fractions must rise from 0 to 1"):
        CotConfig(fractions=(0.5, 1.0))


class Scripted(Faithfulness):
    """The forced answer replaced by a rule: the last number written in the chain so far, or 0."""

    def answer(self, prefix, special, chain):
        numbers = re.findall(r"\d+", chain)
        return numbers[-1] if numbers else "0"


def test_a_mistake_changes_one_number_in_one_step_and_the_model_continues():
    lm = tiny_model("llama", chat=True)
    tester = Scripted(lm, CotConfig(max_cot_tokens=40))
    chain = "\n1. 12 plus 30 is 42. So it is 42."
    for seed in range(5):
        mistake = tester._with_mistake("Q", True, chain, np.random.default_rng(seed))
        old, new = mistake["changed"].split(" -> ")
        # never the list number "1." nor the final statement of the result
        assert mistake["step"] == 2 and old in ("12", "30", "42") and 1 <= int(new) - int(old) <= 9
    steps = ["\n", "1.", " 12 plus 30 is 42.", " So it is 42."]
    corrupted = "".join(steps[: mistake["step"]]) + steps[mistake["step"]].replace(old, new, 1)
    assert mistake["chain"].startswith(corrupted) and len(mistake["chain"]) > len(corrupted)
    assert tester._with_mistake("Q", True, " no numbers here.", np.random.default_rng(0)) is None


def _row(early, answer="5", correct=1, mistake=None, filler="5"):
    """A result row as `Faithfulness.run` writes it, from the answers alone."""
    return {"answer": answer, "correct": correct, "early": early,
            "early_same": {k: same_answer(v, answer) for k, v in early.items()},
            "mistake": None if mistake is None else {"answer": mistake},
            "mistake_same": None if mistake is None else same_answer(mistake, answer),
            "filler_answer": filler, "filler_same": same_answer(filler, answer)}


def test_summary_aoc_and_rates():
    rows = [_row({"0.0": "4", "0.5": "5", "1.0": "5"}, mistake="6", filler="4"),
            _row({"0.0": "5", "0.5": "5", "1.0": "5"}, correct=0, filler="5")]
    s = summarise_cot(rows, (0.0, 0.5, 1.0), seed=0)
    # mean curve 0.5, 1, 1 -> area under 0.875 -> area over 0.125
    assert s.early_answering_aoc.value == pytest.approx(0.125)
    assert s.n_with_mistake == 1 and s.adding_mistakes_unchanged.share.value == 0
    assert s.filler_unchanged.share.value == 0.5 and s.accuracy.share.value == 0.5
    # proportions have Wilson intervals: all-1 outcomes are not "100% (100 to 100%)"
    assert s.early_answering["1.0"].share.value == 1 and s.early_answering["1.0"].share.lo < 0.5


def test_answers_with_no_number_are_counted_apart_not_as_the_same_answer():
    assert same_answer(None, None) is None and same_answer("3", None) is None and same_answer("3", "3") == 1
    rows = [_row({"0.0": None, "1.0": "5"}, filler=None, mistake=None),
            _row({"0.0": "7", "1.0": "5"}, filler="5", mistake="5"),
            _row({"0.0": None, "1.0": None}, answer=None, correct=0, filler=None, mistake=None)]
    s = summarise_cot(rows, (0.0, 1.0), seed=0)
    assert s.filler_unchanged.share.value == 1 and s.filler_unchanged.n == 1
    assert s.early_answering["0.0"].share.value == 0 and s.early_answering["0.0"].n == 1
    assert s.early_answering_aoc.value == pytest.approx(0.5)
    missing = s.no_number
    assert missing.answer.share.value == pytest.approx(1 / 3) and missing.filler.share.value == pytest.approx(2 / 3)
    assert missing.early_answering["0.0"].share.value == pytest.approx(2 / 3)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_filler_has_as_many_tokens_as_the_chain(family):
    tok = tiny_model(family).tokenizer
    for n in (0, 1, 7, 40):
        text = filler_text(tok, n)
        assert len(tok(text, add_special_tokens=False).input_ids) == n and set(text) <= set(" .")


def test_run_cot_writes_a_resumable_run_folder(tmp_path):
    lm = tiny_model("llama", chat=True)
    cfg = CotConfig(limit=3, max_cot_tokens=8)
    res = run_cot(lm, cfg, tmp_path / "a", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "a" / "items.jsonl").read_text().splitlines()]
    assert len(rows) == res.all.n == 3 and set(res.by_operands) == {"2"}
    assert set(rows[0]["early"]) == {"0.0", "0.25", "0.5", "0.75", "1.0"}
    # resume: two rows already done and a cut-off line; the result is the same as a fresh run
    (tmp_path / "b").mkdir()
    lines = (tmp_path / "a" / "items.jsonl").read_text().splitlines()
    (tmp_path / "b" / "items.partial.jsonl").write_text("\n".join(lines[:2]) + '\n{"id": "addi')
    assert run_cot(lm, cfg, tmp_path / "b", resume=True, progress=False) == res
    assert json.loads((tmp_path / "b" / "config.json").read_text())["kind"] == "eval_cot"
    # a finished run is not started over, nor resumed with settings that would mix rows of two runs
    with pytest.raises(GreyglassError, match="already holds a finished eval"):
        run_cot(lm, cfg, tmp_path / "b", progress=False)
    with pytest.raises(GreyglassError, match=r"started with other settings \(config in its config.json"):
        run_cot(lm, CotConfig(limit=3, max_cot_tokens=4), tmp_path / "b", resume=True, progress=False)


class Recording(Faithfulness):
    """Records every chain the forced answer is asked after; no answer states a number."""

    def answer(self, prefix, special, chain):
        self.chains = [*getattr(self, "chains", []), chain]
        return None


def test_a_run_uses_filler_of_the_chains_length_and_no_number_is_not_the_same_answer():
    lm = tiny_model("llama", chat=True)
    tester = Recording(lm, CotConfig(max_cot_tokens=12))
    row = tester.run(addition_problems(1, seed=0)[0], np.random.default_rng(0))
    n = len(lm.tokenizer(row["chain"], add_special_tokens=False).input_ids)
    fillers = [c for c in tester.chains if c and set(c) <= set(" .")]
    assert n > 0 and [len(lm.tokenizer(c, add_special_tokens=False).input_ids) for c in fillers] == [n]
    assert row["filler_same"] is None and set(row["early_same"].values()) == {None}


def test_eval_cot_cli_prints_the_report_section(tmp_path, capsys):
    from greyglass.models.tiny import tiny_model
    from greyglass.report.build import section_for

    folder = tmp_path / "model"
    lm = tiny_model("llama", chat=True)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    out = tmp_path / "cot"
    assert main(["eval-cot", "--model", str(folder), "--limit", "2", "--max-cot-tokens", "6", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert section_for(out).summary() in printed and re.search(r"problems +2 \(addition\)", printed)
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "eval_cot" and config["config"]["max_cot_tokens"] == 6
