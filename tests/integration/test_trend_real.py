"""`greyglass trend` on both real embedded models: sycophancy, a very small --limit."""

import json

import pytest

from greyglass.cli import main
from greyglass.job import read_job_run
from greyglass.report.build import section_for
from greyglass.trend.jobs import TREND


@pytest.mark.slow
def test_sycophancy_trend_over_both_embedded_models(tmp_path, capsys):
    out = tmp_path / "trend"
    code = main(["trend", "--eval", "sycophancy", "--limit", "3", "--model", "gemma3-270m",
                 "--model", "smollm2-135m-instruct", "--out", str(out), "--no-progress"])
    assert code == 0
    assert section_for(out).summary() in capsys.readouterr().out
    res = read_job_run(TREND, out).results
    small, large = res.models
    assert (small.spec, large.spec) == ("smollm2-135m-instruct", "gemma3-270m")  # ordered by counted parameters
    assert 130e6 < small.parameters < 140e6 and 260e6 < large.parameters < 280e6
    # the instruct model is asked through its chat template, the base model in Human/Assistant turns
    first_prompt = {m.label: json.loads((out / m.folder / "items.jsonl").read_text().splitlines()[0])["prompt"]
                    for m in res.models}
    assert first_prompt["smollm2-135m-instruct"].startswith("<|im_start|>")
    assert first_prompt["gemma3-270m"].startswith("\n\nHuman:")
    # the change is paired over the questions asked with the user's view stated (not the no-biography controls)
    assert res.change is not None and res.change.paired and res.change.n == small.n == large.n == 3
    assert res.verdict in ("rises", "falls", "mixed", "none") and (out / "trend.svg").exists()
