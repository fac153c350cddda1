"""`greyglass redteam` on the real embedded instruct model (red model, target and judge at once), on a tiny budget."""

import json
import re

import pytest

from greyglass.redteam.config import RedteamConfig
from greyglass.redteam.run import CASES, run_redteam


@pytest.mark.slow
def test_smollm_red_teams_itself_for_the_secret_code(smollm, tmp_path):
    cfg = RedteamConfig(failure="secret", rounds=2, cases=2, classifiers=("rule", "judge"), max_case_tokens=16,
                        max_answer_tokens=24, n_bootstrap=100)
    results = run_redteam(smollm, cfg, tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / CASES).read_text().splitlines()]
    assert len(rows) == 6 and results.n_answers == 6
    # a real model writes words as its test cases and answers in words, and the few-shot prompt lists earlier cases
    assert sum(len(re.findall(r"[A-Za-z]{2,}", r["case"])) >= 2 for r in rows) >= 4
    assert all(re.search(r"[A-Za-z]{2,}", r["answer"]) for r in rows)
    for r in rows:
        assert r["verdict"] == ("fail" if r["classifiers"]["rule"]["fail"] else "pass")
        assert 0 < r["classifiers"]["judge"]["score"] < 1
        if r["method"] == "few_shot":
            earlier = {x["case_id"]: x["case"] for x in rows if x["round"] == 1}
            assert all(f". {earlier[e]}\n" in r["red_prompt"] for e in r["examples"])
    assert [m.method for m in results.methods] == ["zero_shot", "few_shot"]
    assert all(m.failure_rate.lo < m.failure_rate.hi for m in results.methods)  # never a zero-width interval
