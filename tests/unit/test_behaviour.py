"""Eval harness mechanics on tiny random models: loaders, formats, the prefix-shared scorer, run folders."""

import json

import pytest
import torch

from greyglass import GreyglassError
from greyglass.cli import main
from greyglass.directions import Direction
from greyglass.behaviour.datasets import load_dataset
from greyglass.behaviour.formats import FEW_SHOT, Prompt, PromptFormat
from greyglass.behaviour.items import load_items
from greyglass.behaviour.local import AnswerRequest, LocalBackend, encode, score_naive
from greyglass.behaviour.config import EvalConfig
from greyglass.behaviour.run import run_eval, stratified_sample
from greyglass.models.hooks import run_to_sites
from greyglass.models.tiny import TINY_FAMILIES, tiny_model

ROW = {"question": "Q?\n (A) x\n (B) y", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"}


def test_jsonl_bad_rows_name_file_and_line(write_lines):
    path = write_lines("bad.jsonl", [json.dumps(ROW), "", "{not json"])
    with pytest.raises(GreyglassError, match=r"bad.jsonl:3: not valid JSON"):
        load_items(path)
    path = write_lines("missing.jsonl", [json.dumps(ROW), json.dumps({"question": "Q"})])
    with pytest.raises(GreyglassError, match=r"missing.jsonl:2: missing field\(s\) answer_matching_behavior"):
        load_items(path)
    same = {**ROW, "answer_not_matching_behavior": "(A)"}
    with pytest.raises(GreyglassError, match=r"same.jsonl:1: .* also listed"):
        load_items(write_lines("same.jsonl", [json.dumps(same)]))


def test_caa_json_array_errors_give_the_rows_line(write_lines):
    rows = [ROW, ROW, {"question": "no answers"}]
    path = write_lines("caa.json", [json.dumps(rows, indent=1)])
    with pytest.raises(GreyglassError, match=r"caa.json:12: missing field"):
        load_items(path)
    items = load_items(write_lines("ok.json", [json.dumps(rows[:2])]))
    assert items[0].choices == ("(A)", "(B)") and items[0].matching_index == 0


def test_political_files_match_the_users_side_and_strip_the_bio():
    lib, cons = load_dataset("sycophancy-political-liberal-bio"), load_dataset("sycophancy-political-conservative-bio")
    assert len(lib) == len(cons) == 5100
    # `corrects` is the liberal answer in both files, so the matching answers are opposite
    assert lib[0].answer_matching_behavior != cons[0].answer_matching_behavior
    assert lib[0].prompt.endswith("(B) A bigger government providing more services")
    controls = {it.metadata["without_bio"] for it in lib}
    assert len(controls) == 17 and None not in controls
    assert not any("my name" in c.lower() or c[0].islower() for c in controls)
    assert {it.metadata["without_bio"] for it in cons} == controls


def test_caa_sycophancy_controls_start_at_the_question():
    items = load_dataset("caa-sycophancy")
    assert len(items) == 400 and all(it.metadata["without_bio"] for it in items)
    assert all(it.metadata["without_bio"].startswith(("Do you agree or disagree", "Which option")) for it in items)


def test_prompt_formats(tiny_llama):
    chat = tiny_model("llama", chat=True)
    text, special = PromptFormat(answer_prefix="I believe").render("Q?", chat.tokenizer)
    assert text == "<|user|>Q?\n<|assistant|>I believe" and not special
    text, special = PromptFormat().render("Q?", tiny_llama.tokenizer)  # auto on a base model
    assert text == "\n\nHuman: Q?\n\nAssistant:" and special
    text, _ = PromptFormat(format="raw", few_shot=1, answer_prefix="So").render("Q?", chat.tokenizer)
    assert text.startswith("Which number is larger?") and text.endswith("Q?\n\nAnswer: So")
    with pytest.raises(GreyglassError, match="chat template"):
        PromptFormat(format="chat").render("Q?", tiny_llama.tokenizer)
    with pytest.raises(GreyglassError, match="PromptFormat.format"):
        PromptFormat(format="xml")


def test_prompt_formats_render_conversations_as_one_question_is_rendered(tiny_llama):
    chat = tiny_model("llama", chat=True)
    talk = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Q?"}]
    text, special = PromptFormat().conversation(talk, tiny_llama.tokenizer)
    assert text == "Be brief.\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Q?\n\nAssistant:" and special
    text, _ = PromptFormat(format="raw", answer_prefix="So").conversation(talk, chat.tokenizer)
    assert text == "Be brief.\n\nHi\n\nAnswer: Hello\n\nQ?\n\nAnswer: So"
    text, special = PromptFormat(few_shot=1).conversation(talk, chat.tokenizer)
    assert text == chat.tokenizer.apply_chat_template(
        [talk[0], {"role": "user", "content": FEW_SHOT[0][0]}, {"role": "assistant", "content": FEW_SHOT[0][1]},
         *talk[1:]], tokenize=False, add_generation_prompt=True) and not special
    for fmt in (PromptFormat(), PromptFormat(format="raw", few_shot=2, answer_prefix="So")):  # a question is one turn
        assert fmt.render("Q?", tiny_llama.tokenizer) == fmt.conversation([talk[-1]], tiny_llama.tokenizer)
    with pytest.raises(GreyglassError, match="end with a user message"):
        PromptFormat().conversation(talk[:3], tiny_llama.tokenizer)
    with pytest.raises(GreyglassError, match="message 2: .*'tool'"):
        PromptFormat().conversation([*talk[:2], {"role": "tool", "content": "x"}, talk[3]], tiny_llama.tokenizer)


def test_tokens_shared_by_all_prompts_run_once(tiny_llama):
    backend = LocalBackend(tiny_llama)
    assert backend._shared_prefix([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7, 8]], 3) == 5
    assert backend._shared_prefix([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]], 3) == 5  # keeps the last token
    assert backend._shared_prefix([[1, 2, 3, 9], [1, 2, 3, 8]], 3) == 0  # too short to be worth a pass
    assert backend._shared_prefix([[1, 2, 3, 4, 5, 6]], 3) == 0
    gemma = LocalBackend(tiny_model("gemma3"))  # sliding window of 16 tokens: padding must not widen distances
    assert gemma._shared_prefix([list(range(10)), list(range(9)) + [0]], 2) == 9
    assert gemma._shared_prefix([list(range(14)), list(range(13)) + [0]], 2) == 0


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_prefix_shared_scores_equal_one_forward_per_answer(family):
    lm = tiny_model(family, chat=True)
    questions = ["Is it?\n (A) yes\n (B) no", "Pick one of these\n (A) x\n (B) y\n (C) zz", "Hm"]
    answers = [("(A)", "(B)"), ("(A)", "(B)", "(C) zz"), ("(A) a much longer answer", "(B)")]
    reqs = [AnswerRequest(PromptFormat(answer_prefix="I think", few_shot=i).render(q, lm.tokenizer), a)
            for i, (q, a) in enumerate(zip(questions, answers))]
    one_token = [AnswerRequest(Prompt(q + "\nAnswer: ", True), ("A", "B")) for q in questions]  # no answer pass
    assert {len(a) for r in one_token for a in encode(lm.tokenizer, r)[1]} == {1}
    for reqs, answers in ((reqs, answers), (one_token, [("A", "B")] * 3)):
        fast, slow = LocalBackend(lm).score(reqs), score_naive(lm, reqs)
        everywhere = score_naive(lm, reqs, logits_everywhere=True)
        for f, s, e, a in zip(fast, slow, everywhere, answers):
            assert len(f.logprobs) == len(a)
            assert max(abs(x - y) for x, y in zip(f.logprobs, s.logprobs)) < 1e-4
            assert s.logprobs == pytest.approx(e.logprobs, abs=1e-4)


def test_similar_lengths_bound_the_padding():
    from greyglass.behaviour.local import similar_lengths

    assert similar_lengths([50, 10, 11, 52, 100], 0.1) == [[1, 2], [0, 3], [4]]
    assert similar_lengths([10, 10, 10], 0.0) == [[0, 1, 2]]
    assert similar_lengths([], 0.1) == []


def test_probe_reads_the_answer_position_in_the_same_pass(tiny_llama):
    site = "blocks.2.hook_resid_post"
    direction = Direction(torch.randn(64), site, "mean_diff", bias=0.5)
    reqs = [AnswerRequest(PromptFormat().render(q, tiny_llama.tokenizer), ("(A)", "(B)"))
            for q in ["one question", "two questions"]]
    forwards = []
    hook = tiny_llama.model.register_forward_hook(lambda *_: forwards.append(1))
    backend = LocalBackend(tiny_llama, probe=direction)
    try:
        scored = backend.score(reqs)
        # the shared "<bos>\n\nHuman: " once, the rest of the prompts once, the answers once: no pass for the probe
        assert len(forwards) == 3
        assert backend.score(reqs) == scored and len(forwards) == 5  # the shared part's cache is kept
    finally:
        hook.remove()
    for req, s in zip(reqs, scored):
        ids = tiny_llama.tokenizer(req.prompt.text, return_tensors="pt").input_ids
        resid = run_to_sites(tiny_llama, ids, [site])[site][0, -1]
        assert s.probe == pytest.approx(float(direction.score(resid)), abs=1e-4)
    with pytest.raises(GreyglassError, match="d_model 8"):
        LocalBackend(tiny_llama, probe=Direction(torch.randn(8), site, "mean_diff"))


def test_stratified_sample_shares_the_limit_between_datasets():
    items = load_dataset("caa-sycophancy") + load_dataset("mwe-human-self-awareness-general-ai")
    sample = stratified_sample(items, 20, seed=1)
    by_ds = {}
    for it in sample:
        by_ds.setdefault(it.metadata["dataset"], []).append(it.answer_matching_behavior)
    assert sorted(len(v) for v in by_ds.values()) == [10, 10]
    assert all(abs(v.count("(A)") - v.count("(B)")) <= 2 for v in by_ds.values())
    assert [it.id for it in sample] == [it.id for it in stratified_sample(items, 20, seed=1)]


class Counting:
    """Wraps a backend and counts the prompts it is asked to score; can fail after some batches."""

    def __init__(self, inner, fail_after=None):
        self.inner, self.fail_after, self.asked, self.batches = inner, fail_after, 0, 0
        self.tokenizer, self.default_batch_size = inner.tokenizer, inner.default_batch_size

    def provenance(self):
        return self.inner.provenance()

    def score(self, requests):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt
        self.batches += 1
        self.asked += len(requests)
        return self.inner.score(requests)


def test_sycophancy_run_folder_and_resume(tmp_path):
    lm = tiny_model("llama", chat=True)
    cfg = EvalConfig(limit=6, batch_size=2)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_eval(Counting(LocalBackend(lm), fail_after=2), cfg, out, progress=False)
    assert not (out / "results.json").exists()
    partial = (out / "items.partial.jsonl").read_text().splitlines()
    assert len(partial) >= 4
    (out / "items.partial.jsonl").write_text("\n".join(partial) + '\n{"id": "cut off')
    resumed = Counting(LocalBackend(lm))
    results = run_eval(resumed, cfg, out, resume=True, progress=False)
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    # 6 questions asked with and without the biography, each in both answer orders; the political controls repeat
    assert len(rows) == results.n_items == 24
    assert resumed.asked < 24 - len(partial) + 1
    assert {r["order"] for r in rows} == {"original", "swapped"} and all(r["cluster"] for r in rows)
    political = results.datasets["sycophancy-political-liberal-bio"]  # asked with the biography
    assert political.n == 2 and political.n_both_orders == 2 and political.raw_matched.lo <= political.raw_matched.hi
    fresh = run_eval(LocalBackend(lm), cfg, tmp_path / "fresh", progress=False)
    assert fresh == results
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["prompt"]["answer_prefix"] == "I believe the better option is"
    assert config["model"]["name"] == "tiny-llama" and len(config["data_fingerprint"]) == 64
    assert set(results.controls) == {"all", *results.datasets}
    for part in ("sycophancy-political-liberal-bio", "caa-sycophancy", "all"):
        assert results.controls[part].no_bio is not None and results.controls[part].bio_effect is not None
        est = (results.all if part == "all" else results.datasets[part]).p_match
        assert est.lo <= est.value <= est.hi
    row = rows[0]
    assert row["p_match"] == pytest.approx(
        torch.softmax(torch.tensor(row["logprobs"]), 0)[row["choices"].index(row["answer_matching_behavior"])].item())
    with pytest.raises(GreyglassError, match="already holds a finished eval"):
        run_eval(LocalBackend(lm), cfg, out, progress=False)
    with pytest.raises(GreyglassError, match=r"started with other settings \(data_fingerprint in its config.json"):
        run_eval(LocalBackend(lm), EvalConfig(limit=6, batch_size=2, prompt=PromptFormat(answer_prefix="Hm")), out,
                 resume=True, progress=False)
    with pytest.raises(GreyglassError, match=r"started with other settings \(.*backend.* in its config.json"):
        run_eval(LocalBackend(tiny_model("qwen2", chat=True)), cfg, out, resume=True, progress=False)


def test_eval_cli_on_a_model_folder_with_a_probe(tmp_path, tiny_llama, capsys, write_lines):
    from greyglass.report.build import section_for

    folder = tmp_path / "model"
    tiny_llama.model.save_pretrained(folder)
    tiny_llama.tokenizer.save_pretrained(folder)
    Direction(torch.randn(64), "blocks.2.hook_resid_post", "mean_diff").save(tmp_path / "probe")
    data = write_lines("mine.jsonl", [json.dumps({**ROW, "question": f"Q{i}?\n (A) x\n (B) y"}) for i in range(4)])
    out = tmp_path / "run"
    code = main(["eval", "--model", str(folder), "--eval", "behaviour", "--datasets", str(data), "--format", "raw",
                 "--probe", str(tmp_path / "probe"), "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert section_for(out).summary() in printed  # the terminal says what the report says
    assert "mine.jsonl: share matching the behaviour" in printed and "probe at blocks.2.hook_resid_post" in printed
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(isinstance(r["probe"], float) for r in rows)
    results = json.loads((out / "results.json").read_text())
    assert results["probe"]["path"] == str(tmp_path / "probe") and results["probe"]["n"] == 8
    assert main(["eval", "--model", str(folder), "--eval", "behaviour", "--out", str(tmp_path / "x")]) == 2
    assert "needs at least one --datasets" in capsys.readouterr().err
    assert main(["eval", "--url", "http://127.0.0.1:9/v1", "--probe", str(tmp_path / "probe")]) == 2
    assert "probe needs the local model" in capsys.readouterr().err
    assert main(["eval", "--timeout-s", "5"]) == 2
    assert "HttpConfig needs --url" in capsys.readouterr().err


def test_political_items_cluster_by_their_question():
    lib, cons = load_dataset("sycophancy-political-liberal-bio"), load_dataset("sycophancy-political-conservative-bio")
    clusters = {it.metadata["cluster"] for it in lib}
    # 5100 biographies around the same few quiz questions: one cluster per question, shared by both files
    assert len(clusters) == len({it.metadata["without_bio"] for it in lib}) == 17
    assert {it.metadata["cluster"] for it in cons} == clusters
    mwe = load_dataset("mwe-human-survival-instinct")
    assert len({it.metadata["cluster"] for it in mwe}) == len({it.prompt for it in mwe})


def test_answers_swap_between_the_letters():
    from greyglass.behaviour.items import with_answers_swapped

    item = load_items_from_rows([{"question": "Q?\n\nChoices:\n (A) yes\n (B) no", "answer_matching_behavior": "(B)",
                                  "answer_not_matching_behavior": "(A)"}])[0]
    swapped = with_answers_swapped(item)
    assert swapped.prompt == "Q?\n\nChoices:\n (A) no\n (B) yes"
    assert swapped.answer_matching_behavior == "(A)" and swapped.metadata["unswapped_id"] == item.id
    assert swapped.metadata["cluster"] == item.metadata["cluster"]
    # two scored answers among four listed: only their texts move
    many = load_dataset("mwe-human-survival-instinct")
    four = next(it for it in many if it.choices == ("(A)", "(D)") and "\n (C)" in it.prompt)
    moved = with_answers_swapped(four)
    lines = lambda text, label: [line for line in text.splitlines() if line.strip().startswith(label)]  # noqa: E731
    assert lines(moved.prompt, "(A)")[0][5:] == lines(four.prompt, "(D)")[0][5:]
    assert lines(moved.prompt, "(C)") == lines(four.prompt, "(C)")
    unlisted = load_items_from_rows([{"question": "Yes or no?", "answer_matching_behavior": "(A)",
                                      "answer_not_matching_behavior": "(B)"}])[0]
    assert with_answers_swapped(unlisted) is None


def load_items_from_rows(rows):
    from greyglass.behaviour.items import item_from_row

    return [item_from_row(row, "t", f"t:{i + 1}", i) for i, row in enumerate(rows)]


def test_a_tie_is_not_broken_towards_a():
    from greyglass.behaviour.scorers import score_match

    b_matches, a_matches = load_items_from_rows([ROW | {"answer_matching_behavior": "(B)",
                                                        "answer_not_matching_behavior": "(A)"}, ROW])
    for item in (a_matches, b_matches):
        scored = score_match(item, [-0.7, -0.7])  # e.g. 4 of 8 sampled chat replies each
        assert scored["matched"] == 0.5 and scored["chosen"] is None and scored["p_match"] == 0.5
    assert score_match(b_matches, [-0.1, -2.0])["matched"] == 0


def _row(i, cluster, order, p_match):
    return {"id": f"d/{i}" + ("/swapped" if order == "swapped" else ""), "unswapped_id": f"d/{i}", "base_id": f"d/{i}",
            "dataset": "d", "condition": "default", "cluster": cluster, "order": order, "p_match": p_match,
            "matched": int(p_match > 0.5), "p_first": p_match if order == "original" else 1 - p_match}


def test_a_lean_towards_a_is_not_read_as_behaviour():
    from greyglass.behaviour.scorers import combine_orders, summarise

    # the matching answer is (A) in the file; a model that puts 0.8 on (A) whatever it says
    rows = [r for i in range(40) for r in (_row(i, i, "original", 0.8), _row(i, i, "swapped", 0.2))]
    part = summarise(combine_orders(rows))
    assert part.raw_matched.value == 1 and part.raw_matched.lo > 0.9
    assert part.matched.value == 0.5 and part.p_match.value == pytest.approx(0.5)
    assert part.matched.lo < 0.5 < part.matched.hi
    assert part.p_first_answer.value == pytest.approx(0.8)


def test_intervals_resample_questions_and_are_never_empty():
    from greyglass.behaviour.scorers import combine_orders, summarise
    from greyglass.stats import mean_ci

    # 60 biographies around 3 questions: the model agrees on every item of two questions, on none of the third
    rows = [_row(i, i % 3, "original", 0.9 if i % 3 else 0.1) for i in range(60)]
    part = summarise(combine_orders(rows))
    by_rows = mean_ci([r["matched"] for r in rows])
    assert part.n_questions == 3
    assert part.matched.hi - part.matched.lo > 2 * (by_rows.hi - by_rows.lo)
    never = summarise(combine_orders([_row(i, i, "original", 0.1) for i in range(12)]))
    assert never.matched.value == 0 and never.matched.hi > 0.1  # not "0% (0-0%)"


def test_report_headline_does_not_read_a_letter_lean_as_behaviour(tmp_path):
    from greyglass.behaviour.report import eval_section
    from greyglass.behaviour.results import EvalResults
    from greyglass.behaviour.scorers import combine_orders
    from greyglass.behaviour.tasks import by_dataset
    from greyglass.job import RunInfo

    rows = [r for i in range(40) for r in (_row(i, i, "original", 0.8), _row(i, i, "swapped", 0.2))]
    results = EvalResults("behaviour", "power-seeking", 80, **by_dataset(combine_orders(rows))._asdict())
    section = eval_section(results, EvalConfig(eval="behaviour", datasets=("d",)), RunInfo(tmp_path, {}))
    assert "no reliable lean" in section.headline and "follows the answer's letter" in section.headline
    numbers = dict(section.numbers)
    assert numbers["probability on whichever answer is (A) (50% = no lean to a letter)"].startswith("80.0%")
    assert numbers["all questions: the same two, answers in the file's order only"].startswith("100.0%")


def test_a_paired_difference_of_identical_answers_is_not_zero_width():
    from greyglass.behaviour.scorers import combine_orders, paired_difference

    # three questions, the model agrees with and without the biography alike: no change, but not "+0 (+0 to +0)"
    with_bio = combine_orders([_row(i, i, "original", 0.9) for i in range(3)])
    no_bio = combine_orders([_row(i, i, "original", 0.9) for i in range(3)])
    d = paired_difference(list(zip(with_bio, no_bio)))
    assert d.matched.value == 0 and d.matched.lo < -0.3 and d.matched.hi > 0.3
    moved = combine_orders([_row(i, i, "original", 0.1 + 0.25 * i) for i in range(3)])
    spread = paired_difference(list(zip(with_bio, moved))).p_match
    assert spread.lo < spread.value < spread.hi < 0.81  # the bootstrap where it has a spread


def test_scorer_passes_the_cache_by_its_current_name(tiny_llama, cache_deprecations):
    """transformers 5.24 renamed `past_key_values` to `cache` (the old name goes in 5.40); the scorer must not use it."""
    reqs = [AnswerRequest(Prompt(f"The same long shared system prompt. Question {i}?", True), ("yes it is", "no"))
            for i in range(3)]
    backend = LocalBackend(tiny_llama)
    assert backend._shared_prefix([encode(tiny_llama.tokenizer, r)[0] for r in reqs], 9) > 0  # the prefix cache runs
    with cache_deprecations() as seen:
        fast = backend.score(reqs)
    assert seen == []
    slow = score_naive(tiny_llama, reqs)
    assert [x for f in fast for x in f.logprobs] == pytest.approx([x for s in slow for x in s.logprobs], abs=1e-4)


def test_demo_sycophancy_step_prints_its_section_and_can_run_again(tmp_path, capsys):
    from greyglass.demo import demo_runs, run_demo
    from greyglass.report.build import section_for

    lm = tiny_model("llama", chat=True)
    steps = [r for r in demo_runs(tmp_path, lm.n_layers) if r.name == "sycophancy"]
    run_demo(lm, tmp_path, steps)
    out = tmp_path / "sycophancy"
    assert f"[eval] {section_for(out).summary()}" in capsys.readouterr().out
    first = (out / "results.json").read_text()
    run_demo(lm, tmp_path, steps)  # a rerun of the demo resumes into the same folder instead of failing
    assert (out / "results.json").read_text() == first


def test_the_local_batch_size_follows_the_device(tmp_path):
    """Without --batch-size the local scorer takes 8 prompts per forward pass on the CPU (64 on a GPU), and
    config.json records the size used."""
    lm = tiny_model("llama", chat=True)
    assert LocalBackend(lm).default_batch_size == 8
    counting = Counting(LocalBackend(lm))
    run_eval(counting, EvalConfig(limit=6), tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["batch_size"] == 8
    assert counting.batches < counting.asked  # several requests per forward pass
