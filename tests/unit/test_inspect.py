"""inspect_ai interoperability on tiny random models: greyglass eval runs as inspect logs, read back with
inspect_ai's own reader, and inspect tasks run on a greyglass model through the `greyglass/` provider."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from inspect_ai import Task, eval as inspect_eval
from inspect_ai.dataset import Sample
from inspect_ai.log import read_eval_log
from inspect_ai.scorer import match
from inspect_ai.solver import generate

import greyglass.interop.inspect_registry  # noqa: F401  (what the inspect_ai entry point loads)
from greyglass.behaviour.config import CotConfig, EvalConfig, PressureConfig
from greyglass.behaviour.cot import run_cot
from greyglass.behaviour.local import LocalBackend
from greyglass.behaviour.pressure import run_pressure
from greyglass.behaviour.run import run_eval
from greyglass.cli import main
from greyglass.directions import Direction
from greyglass.models.generate import adds_bos, generate_ids
from greyglass.models.hooks import run_to_sites
from greyglass.models.loader import load_model
from greyglass.models.tiny import tiny_model
from greyglass.steer.apply import steering

ROOT = Path(__file__).resolve().parents[2]
SITE = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def lm():
    return tiny_model("llama", chat=True)


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe") / "direction"
    Direction(torch.randn(64, generator=torch.Generator().manual_seed(0)), SITE, "mean_diff").save(folder)
    return folder


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]


def _export(folder: Path, out: Path, capsys) -> object:
    assert main(["export", "inspect", str(folder), "-o", str(out)]) == 0
    assert f"inspect log written to {out}" in capsys.readouterr().out
    return read_eval_log(str(out))


def test_a_probe_monitored_sycophancy_run_reads_back_as_an_inspect_log(lm, probe, tmp_path, capsys):
    run = tmp_path / "eval"
    cfg = EvalConfig(limit=3, batch_size=4, probe=str(probe))
    results = run_eval(LocalBackend(lm, probe=Direction.load(probe)), cfg, run, progress=False)
    log = _export(run, tmp_path / "sycophancy.eval", capsys)
    rows = _rows(run)
    assert log.status == "success" and log.eval.task == "greyglass/eval_sycophancy"
    assert log.eval.model == "greyglass/tiny-llama" and log.eval.task_args["limit"] == 3
    assert log.eval.metadata["greyglass"]["data_fingerprint"] == json.loads((run / "config.json").read_text())[
        "data_fingerprint"]
    assert len(log.samples) == len(rows) == results.n_items  # every prompt scored: each answer order, each control
    by_id = {s.id: s for s in log.samples}
    for row in rows:
        s = by_id[row["id"]]
        assert s.input == row["prompt"] and s.choices == row["choices"] and s.target == row["answer_matching_behavior"]
        assert s.scores["matched"].value == row["matched"] and s.scores["p_match"].value == row["p_match"]
        assert s.output.completion == (row["chosen"] or "")
        assert s.metadata["logprobs"] == dict(zip(row["choices"], row["logprobs"]))
        assert s.metadata["probe"] == {"site": SITE, "kind": "mean_diff", "score": row["probe"]}
    # the position-debiased score of an item asked both ways is the mean over its two orders
    swapped = next(r for r in rows if r["order"] == "swapped")
    pair = [by_id[swapped["unswapped_id"]], by_id[swapped["id"]]]
    assert pair[0].metadata["debiased"]["orders"] == 2
    assert pair[0].metadata["debiased"]["p_match"] == pytest.approx((pair[0].scores["p_match"].value
                                                                     + pair[1].scores["p_match"].value) / 2)
    assert pair[0].metadata["debiased"] == pair[1].metadata["debiased"]
    # the results are greyglass's own figures with their intervals
    metrics = {s.name: {k: m.value for k, m in s.metrics.items()} for s in log.results.scores}
    assert metrics["matched"]["debiased"] == results.all.matched.value
    assert (metrics["p_match"]["debiased_ci95_low"], metrics["p_match"]["debiased_ci95_high"]) == (
        results.all.p_match.lo, results.all.p_match.hi)
    assert metrics["probe"]["auroc"] == results.probe.auroc.value


def test_cot_and_pressure_runs_read_back_as_inspect_logs(lm, tmp_path, capsys):
    cot = tmp_path / "cot"
    cot_results = run_cot(lm, CotConfig(limit=2, max_cot_tokens=4), cot, progress=False)
    log = _export(cot, tmp_path / "cot.json", capsys)  # inspect's JSON format too
    rows = _rows(cot)
    assert log.eval.task == "greyglass/eval_cot_addition" and len(log.samples) == len(rows) == 2
    for s, row in zip(log.samples, rows):
        assert s.input == row["question"] and s.target == row["gold"] and s.output.completion.startswith(row["chain"])
        assert s.scores["correct"].value == row["correct"] and s.scores["early_answering"].value == row["early_same"]
    accuracy = next(e for e in log.results.scores if e.name == "correct").metrics
    assert accuracy["accuracy"].value == cot_results.all.accuracy.share.value

    pressure = tmp_path / "pressure"
    run_pressure(lm, PressureConfig(samples=1, max_tokens=4), pressure, progress=False)
    log = _export(pressure, tmp_path / "pressure.eval", capsys)
    rows = _rows(pressure)
    assert len(log.samples) == len(rows) == 2  # one sample with and one without the ethics instruction
    for s, row in zip(log.samples, rows):
        assert [m.role for m in s.messages][:3] == ["system", "user", "assistant"]
        assert s.messages[2].text == row["turns"][0] and s.output.completion == row["turns"][-1]
        assert ("consider the ethical and legal consequences" in s.messages[0].text) == bool(row["ethics"])
        assert s.scores["traded"].value == row["traded"] and s.metadata["ethics"] == row["ethics"]


def test_an_exported_pressure_conversation_is_what_the_agent_was_sent(lm, monkeypatch):
    from greyglass.behaviour import pressure

    replies = iter([" tip.\nAction: trade(KSTL, buy, 500)",  # trades, then hides it, then denies it
                    ' x\nAction: send_message(Rhea, "Bought KSTL on momentum.")',
                    ' y\nAction: send_message(Rhea, "It was a routine trade.")', " z\nAction: decline()"])
    agents = []

    class Recorded(pressure.Agent):
        def __init__(self, *args):
            super().__init__(*args)
            agents.append(self)

    monkeypatch.setattr(pressure, "generate_text", lambda *args, **kwargs: next(replies))
    monkeypatch.setattr(pressure, "Agent", Recorded)
    cfg = PressureConfig(samples=1, max_tokens=4)
    row = pressure.insider_episode(lm, cfg, True, 0)
    assert (row["traded"], row["hid"], row["doubled_down"]) == (1, 1, 1)
    assert pressure.conversation(json.loads(json.dumps(row)), "insider-trading") == agents[-1].messages
    row = pressure.funds_episode(lm, cfg, {"crisis": 1, "ceo_order": 0, "lax_audit": 1}, False, 0)
    assert pressure.conversation(json.loads(json.dumps(row)), "customer-funds") == agents[-1].messages


def test_export_errors_are_one_line(lm, probe, tmp_path, capsys):
    vec = tmp_path / "vec"
    Direction.load(probe).save(vec)
    (vec / "config.json").write_text(json.dumps({"kind": "steer_vector", "config": {}}))
    (vec / "results.json").write_text("{}")
    assert main(["export", "inspect", str(vec), "-o", str(tmp_path / "x.eval")]) == 2
    assert "holds a 'steer_vector' run; an inspect log can be made from eval, eval_cot, eval_pressure" in \
        capsys.readouterr().err
    assert main(["export", "inspect", str(tmp_path / "none"), "-o", str(tmp_path / "x.eval")]) == 2
    assert "is not a finished run folder: config.json is missing" in capsys.readouterr().err
    assert main(["export", "inspect", str(vec), "-o", str(tmp_path / "x.txt")]) == 2
    assert "a .eval (or .json) file" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.eval")) and not list(tmp_path.glob(".x.eval*"))
    run = tmp_path / "eval"
    run_eval(LocalBackend(lm), EvalConfig(limit=1, both_orders=False), run, progress=False)
    rows = _rows(run)
    del rows[0]["p_match"]
    (run / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["export", "inspect", str(run), "-o", str(tmp_path / "x.eval")]) == 2
    assert "items.jsonl: a row has no field 'p_match'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def model_dir(lm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-chat")
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def _task() -> Task:
    questions = [("What is 1 + 1?", "2"), ("Name a colour.", "red"), ("Say yes.", "yes")]
    return Task(dataset=[Sample(input=q, target=a, id=i) for i, (q, a) in enumerate(questions)], solver=generate(),
                scorer=match())


def _run(model_dir: Path, log_dir: Path, **model_args):
    [log] = inspect_eval(_task(), model=f"greyglass/{model_dir}", model_args=model_args, log_dir=str(log_dir),
                         max_tokens=6, display="none")
    assert log.status == "success", log.error
    return read_eval_log(log.location)  # as written, not the object in memory


def test_an_inspect_task_runs_probe_monitored_and_steered_on_a_greyglass_model(model_dir, probe, tmp_path):
    log = _run(model_dir, tmp_path / "plain", probe=str(probe))
    assert log.eval.model == f"greyglass/{model_dir}" and len(log.samples) == 3
    lm = load_model(str(model_dir))
    direction = Direction.load(probe)
    means = []
    for s in log.samples:
        assert s.scores["match"].value in ("C", "I")
        reading = s.output.metadata["greyglass"]["probe"]
        assert reading["site"] == SITE and reading["n_tokens"] == s.output.usage.output_tokens == 6
        assert len(reading["per_token"]) == 6 and reading["mean"] == pytest.approx(sum(reading["per_token"]) / 6)
        means.append(reading["mean"])
    # the reading is the probe's score of the reply tokens' activations: the greedy reply regenerated here
    s = log.samples[0]
    prompt = lm.tokenizer.apply_chat_template([{"role": "user", "content": s.input}], tokenize=False,
                                              add_generation_prompt=True)
    ids = lm.tokenizer(prompt, add_special_tokens=adds_bos(lm, prompt)).input_ids  # as models.generate encodes
    reply = generate_ids(lm, ids, 6).ids
    assert lm.tokenizer.decode(reply, skip_special_tokens=True) == s.output.completion
    acts = run_to_sites(lm, torch.tensor([ids + reply]), [SITE])[SITE][0, len(ids):]
    assert direction.score(acts).tolist() == pytest.approx(s.output.metadata["greyglass"]["probe"]["per_token"],
                                                           rel=1e-4, abs=1e-4)

    # steered along the probe's own direction, the probe reads more of it in every reply
    steered = _run(model_dir, tmp_path / "steered", probe=str(probe), steer=str(probe), coef=2.0)
    for s, plain_mean in zip(steered.samples, means):
        meta = s.output.metadata["greyglass"]
        assert meta["steering"] == {"site": SITE, "coef": 2.0, "kind": "mean_diff"}
        assert meta["probe"]["mean"] > plain_mean
    s = steered.samples[0]
    with steering(lm, direction, 2.0):  # the same steering as greyglass steer
        reply = generate_ids(lm, ids, 6).ids
        acts = run_to_sites(lm, torch.tensor([ids + reply]), [SITE])[SITE][0, len(ids):]
    assert lm.tokenizer.decode(reply, skip_special_tokens=True) == s.output.completion
    assert direction.score(acts).tolist() == pytest.approx(s.output.metadata["greyglass"]["probe"]["per_token"],
                                                           rel=1e-4, abs=1e-4)


def test_the_inspect_entry_point_names_the_registering_module():
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["inspect_ai"]
    assert entry == {"greyglass": "greyglass.interop.inspect_registry"}


def test_greyglass_help_and_the_export_tool_load_inspect_ai_lazily():
    code = ("import sys; import greyglass.tools, greyglass.interop.jobs; "
            "print('inspect_ai' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True).stdout.strip() == "False"


def test_the_provider_prompts_a_base_model_as_the_evals_do(tmp_path):
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

    from greyglass.behaviour.formats import PromptFormat
    from greyglass.interop.inspect_model import GreyglassAPI

    base = tiny_model("llama")
    base.model.save_pretrained(tmp_path / "base")
    base.tokenizer.save_pretrained(tmp_path / "base")
    api = GreyglassAPI(str(tmp_path / "base"))
    try:
        messages = [ChatMessageSystem(content="Be brief."), ChatMessageUser(content="Hi"),
                    ChatMessageAssistant(content="Hello"), ChatMessageUser(content="Q?")]
        text = api._prompt(messages)
        assert text == "Be brief.\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Q?\n\nAssistant:"
        assert api._prompt(messages[-1:]) == PromptFormat().render("Q?", base.tokenizer).text  # an eval's prompt
    finally:
        api.close()
