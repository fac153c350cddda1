"""Probe mechanics on tiny random models and synthetic data: features, probe kinds, sweep, transfer."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from greyglass import GreyglassError
from greyglass.cli import main
from greyglass.data.statements import Statement
from greyglass.directions import Direction
from greyglass.models.hooks import run_to_sites
from greyglass.models.text_features import text_features
from greyglass.probes.fit import _train_logistic, fit_probe
from greyglass.probes.sweep import held_out_metrics


def test_batched_features_equal_one_statement_at_a_time(tiny_llama):
    texts = ["short", "a much longer statement here", "mid length one"]
    for position in ("last", "mean"):
        feats = text_features(tiny_llama, texts, [0, 2], position=position, batch_size=2)  # [3, 2, 64]
        for i, text in enumerate(texts):
            ids = tiny_llama.tokenizer(text, return_tensors="pt").input_ids
            acts = run_to_sites(tiny_llama, ids, ["resid_post.0", "resid_post.2"])
            for j, site in enumerate(["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]):
                want = acts[site][0, -1] if position == "last" else acts[site][0, 1:].mean(0)
                torch.testing.assert_close(feats[i, j], want, rtol=1e-4, atol=1e-5)


def test_mean_pooling_leaves_out_the_sink_of_a_model_without_bos(tiny_llama):
    """Without BOS the first token is the attention sink (SAE training leaves it out): the mean starts after it."""
    from dataclasses import replace

    from greyglass.models.tiny import byte_tokenizer

    nobos = replace(tiny_llama, tokenizer=byte_tokenizer(add_bos=False), prepend_bos=False)
    texts = ["no bos here", "short"]
    feats = text_features(nobos, texts, [1], position="mean")  # [2, 1, 64]
    for i, text in enumerate(texts):
        ids = nobos.tokenizer(text, return_tensors="pt").input_ids
        assert ids[0, 0] != nobos.tokenizer.bos_token_id
        acts = run_to_sites(nobos, ids, ["blocks.1.hook_resid_post"])["blocks.1.hook_resid_post"][0]
        torch.testing.assert_close(feats[i, 0], acts[1:].mean(0), rtol=1e-4, atol=1e-5)


def test_features_reject_a_layer_out_of_range(tiny_llama):
    with pytest.raises(GreyglassError, match="layer 7 is out of range"):
        text_features(tiny_llama, ["x"], [7])


def _planted(n=200, d=32, seed=0, noise=1.0):
    """Pairs (true, false) that differ along a planted direction, plus nuisance variation."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=g)
    base = torch.randn(n // 2, d, generator=g) * 3
    true = base + direction + noise * torch.randn(n // 2, d, generator=g)
    false = base - direction + noise * torch.randn(n // 2, d, generator=g)
    x = torch.cat([true, false])
    y = torch.cat([torch.ones(n // 2), torch.zeros(n // 2)]).long()
    groups = [str(i) for i in range(n // 2)] * 2
    return x, y, groups, direction


@pytest.mark.parametrize("kind", ["logistic", "mass_mean", "mass_mean_iid", "pca"])
def test_every_probe_kind_finds_a_planted_direction(kind):
    x, y, groups, direction = _planted(n=400)
    probe = fit_probe(kind, x[::2].contiguous(), y[::2], "blocks.0.hook_resid_post", groups[::2])
    xt, yt = x[1::2], y[1::2]
    assert ((probe.score(xt) > 0).long() == yt).float().mean() > 0.9
    if kind in ("mass_mean", "pca"):
        cos = torch.nn.functional.cosine_similarity(probe.vector, direction, dim=0)
        assert cos > 0.8


def test_logistic_matches_sklearn_at_the_same_penalty():
    from sklearn.linear_model import LogisticRegression

    x, y, _, _ = _planted(n=120, d=16, noise=4.0)
    z = (x - x.mean(0)) / x.std(0)
    w, b = _train_logistic(z, y, l2=0.1)
    ref = LogisticRegression(C=1 / (0.1 * len(z)), tol=1e-10, max_iter=10_000).fit(z.numpy(), y.numpy())
    np.testing.assert_allclose(w.numpy(), ref.coef_[0], atol=1e-4)
    assert float(b) == pytest.approx(ref.intercept_[0], abs=1e-4)


def test_pca_needs_pairs_and_probes_need_both_labels():
    x, y, _, _ = _planted(n=20)
    with pytest.raises(GreyglassError, match="paired statements"):
        fit_probe("pca", x, y, "s", None)
    with pytest.raises(GreyglassError, match="only one label"):
        fit_probe("mass_mean", x, torch.ones(20).long(), "s")
    with pytest.raises(GreyglassError, match="unknown probe kind"):
        fit_probe("svm", x, y, "s")


def test_held_out_metrics_have_intervals():
    scores = torch.tensor([2.0, 1.0, 0.5, -0.5, -1.0, -2.0, 0.2, -0.1])
    labels = torch.tensor([1, 1, 1, 0, 0, 0, 0, 1])
    held = held_out_metrics(scores, labels, n_bootstrap=200)
    assert held.accuracy.value == pytest.approx(6 / 8)
    assert held.auroc.lo <= held.auroc.value <= held.auroc.hi


def test_a_perfect_probe_still_has_a_finite_sample_interval():
    # The demo's probe sweep printed "AUROC 1.000 (1.000 to 1.000)" on 48 statements.
    scores, labels = torch.arange(48.0) - 23.5, (torch.arange(48) >= 24).long()
    held = held_out_metrics(scores, labels, n_bootstrap=200, groups=[str(i // 2) for i in range(48)])
    for est in held:
        assert est.value == 1.0 and est.hi == 1.0 and est.lo < 0.9


def test_sweep_cli_writes_a_complete_run_folder(tiny_llama, tmp_path, capsys, write_lines):
    folder = tmp_path / "model"
    tiny_llama.model.save_pretrained(folder)
    tiny_llama.tokenizer.save_pretrained(folder)
    rows = [json.dumps({"statement": f"{a} {'<' if a < b else '>'} {b}", "label": int(a < b), "group": f"{min(a, b)}-{max(a, b)}"})
            for a in range(8) for b in range(8) if a != b]
    data = write_lines("cmp.jsonl", rows)
    out = tmp_path / "sweep"
    code = main(["probe", "sweep", "--model", str(folder), "--data", str(data), "--layer-step", "2",
                 "--kind", "mass_mean", "--n-bootstrap", "100", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert [r["layer"] for r in results["layers"]] == [0, 2, 3]
    assert results["n_train"] + results["n_test"] == 56 and f"layer {results['best_layer']}" in printed
    from greyglass.report.build import section_for

    assert section_for(out).summary() in printed  # the terminal says what the report says
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "probe_sweep" and len(config["data_fingerprint"]) == 64
    probe = Direction.load(out / results["best_probe"])
    assert probe.site == results["best_site"] and probe.metadata["data_fingerprint"] == config["data_fingerprint"]
    assert (out / "accuracy_by_layer.svg").read_text().startswith("<svg")


def test_transfer_matrix_on_a_tiny_model(tiny_llama, tmp_path):
    from greyglass.probes.config import TransferConfig
    from greyglass.probes.transfer import transfer

    cfg = TransferConfig(data=("cities", "neg_cities", "larger_than"), layer=2, n_statements=40)
    results = transfer(tiny_llama, cfg, tmp_path / "t", progress=False)
    acc = np.array([[a.value for a in row] for row in results.accuracy])
    assert acc.shape == (3, 3) and ((acc >= 0) & (acc <= 1)).all()
    assert (tmp_path / "t" / "transfer_accuracy.svg").exists()


def _public_csv(write_lines, name="public_facts.csv", n=8):
    """A file in the format of public true/false data sets: statement,label and an extra column, no group."""
    rows = [f"{a} is less than {b},{int(a < b)},generated" for a in range(n) for b in range(n) if a != b]
    return write_lines(name, ["statement,label,source", *rows])


def test_a_public_statement_label_csv_runs_the_default_sweep(tiny_llama, tmp_path, write_lines):
    from greyglass.probes.config import SweepConfig
    from greyglass.probes.sweep import sweep

    # Every ungrouped statement used to share the group "": the logistic probe's group
    # cross-validation then had one fold with no training rows (ZeroDivisionError).
    cfg = SweepConfig(data=str(_public_csv(write_lines)), layers=(1,), n_bootstrap=50)
    results = sweep(tiny_llama, cfg, tmp_path / "s", progress=False)
    assert results.n_train + results.n_test == 56 and results.n_test == 14
    held = results.layers[0].accuracy
    assert held.lo < held.value < held.hi


def test_ungrouped_statements_are_each_their_own_group():
    from greyglass.data.statements import group_keys

    keys = group_keys([Statement("a", 1), Statement("b", 0, "pair"), Statement("c", 1, "pair"), Statement("d", 0)])
    assert keys[1] == keys[2] == "pair" and len({keys[0], keys[1], keys[3]}) == 3
    with pytest.raises(GreyglassError, match="at least two groups"):
        fit_probe("logistic", torch.randn(4, 3), torch.tensor([1, 0, 1, 0]), "s", ["g"] * 4)


def test_held_out_metrics_resample_whole_groups():
    # Each statement appears twice in one group: a row bootstrap counts the copies as independent
    # evidence, a cluster bootstrap does not, so its interval is wider.
    rng = np.random.default_rng(0)
    scores = torch.tensor(np.repeat(rng.normal(size=20), 2))
    labels = torch.tensor(np.repeat(rng.integers(0, 2, 20), 2))
    groups = [str(i) for i in np.repeat(np.arange(20), 2)]
    rows, clusters = held_out_metrics(scores, labels, 300), held_out_metrics(scores, labels, 300, groups=groups)
    width = lambda e: e.hi - e.lo  # noqa: E731
    assert width(clusters.auroc) > 1.2 * width(rows.auroc)
    assert width(clusters.accuracy) > 1.2 * width(rows.accuracy)


def test_transfer_names_sets_by_their_stem(tiny_llama, tmp_path, write_lines):
    from greyglass.job import RunInfo
    from greyglass.probes.config import TransferConfig
    from greyglass.probes.report import transfer_section
    from greyglass.probes.transfer import transfer

    long = tmp_path / "a_rather_long_folder_name_for_the_data"
    long.mkdir()
    first = _public_csv(write_lines, "a_rather_long_folder_name_for_the_data/first_facts.csv")
    second = _public_csv(write_lines, "second_facts.csv")
    cfg = TransferConfig(data=(str(first), str(second)), layer=1, kind="logistic", n_statements=None)
    results = transfer(tiny_llama, cfg, tmp_path / "t", progress=False)
    assert results.train_rows_test_columns == ("first_facts", "second_facts")
    assert results.data["first_facts"] == str(first)
    cell = results.accuracy[0][1]
    assert cell.lo <= cell.value <= cell.hi and cell.lo < cell.hi
    table = transfer_section(results, cfg, RunInfo(tmp_path / "t", {})).summary()
    assert "trained on first_facts, tested on second_facts" in table and str(first) not in table
    assert "first_facts" in (tmp_path / "t" / "transfer_accuracy.svg").read_text()
    with pytest.raises(GreyglassError, match="share the name 'first_facts'"):
        TransferConfig(data=(str(first), str(tmp_path / "first_facts.jsonl")))


def test_bad_sweep_config_is_one_line_exit_2(capsys):
    assert main(["probe", "sweep", "--model", "tiny", "--test-fraction", "1.5"]) == 2
    assert "test_fraction must be between 0 and 1" in capsys.readouterr().err


def test_statement_dataclass_is_hashable():
    assert len({Statement("a", 1), Statement("a", 1)}) == 1


def test_lying_localisation_mechanics_on_a_tiny_base_model(tiny_llama, tmp_path, capsys):
    from greyglass.probes.config import LyingConfig
    from greyglass.probes.lying import localise_lying, prompt

    text = prompt(tiny_llama, "The city of Rome is in Italy.", "Lie.", lying=True)
    assert text.endswith("Statement: The city of Rome is in Italy.\nAnswer:") and "Answer: False" in text
    results = localise_lying(tiny_llama, LyingConfig(n_questions=4, head_layers=1, n_bootstrap=50), tmp_path / "l",
                             progress=False)
    assert set(results.behaviour) == {"honest", "liar", "opposite", "game"}
    assert results.n_selection == results.n_analysed == 2
    # Patching the last layer's residual stream over the shared tokens makes the lying run's
    # answer logits exactly the honest run's: recovery 1.
    assert results.layer_patching[-1].recovery.value == pytest.approx(1.0, abs=1e-3)
    assert len(results.probe_flip) == 4 and len(results.head_patching) == 4
    assert results.head_layers == (results.onset.layer,)
    assert (tmp_path / "l" / "lying_by_layer.svg").exists()


def test_lying_is_localised_where_recovery_first_rises_not_at_the_last_layer():
    from greyglass.probes.lying import _layers_around, _onset

    # Recovery (per question: c_lie = 0, c_honest = 2) rises at layer 2 and reaches 1 only at the
    # last layer; ranking by recovery would name layer 4. Questions come in pairs (groups).
    rng = np.random.default_rng(0)
    curve = np.array([0.0, 0.1, 0.6, 0.8, 1.0])
    patched = torch.tensor(2 * curve[None, :] + 0.05 * rng.normal(size=(12, 5)))
    patched[:, -1] = 2.0
    c_h, c_l = torch.full((12,), 2.0, dtype=torch.float64), torch.zeros(12, dtype=torch.float64)
    onset = _onset(patched, c_h, c_l, np.repeat(np.arange(6), 2), n_boot=200, seed=0, n_layers=5)
    assert onset.layer == 2 and onset.ci_low <= 2 <= onset.ci_high < 4 and onset.defined
    assert _layers_around(2, 3, 5) == [1, 2, 3] and _layers_around(0, 2, 5) == [0, 1] and _layers_around(4, 0, 5) == []


def test_lying_prompt_is_chosen_on_other_questions_than_it_is_measured_on(tiny_llama, tmp_path, write_lines):
    from greyglass.probes.config import LyingConfig
    from greyglass.probes.lying import localise_lying

    # An ungrouped statement,label file: each statement is its own group (item 6), split in halves.
    data = _public_csv(write_lines, n=3)
    results = localise_lying(tiny_llama, LyingConfig(data=str(data), n_questions=6, head_layers=0, n_bootstrap=50),
                             tmp_path / "l", progress=False)
    assert results.n_selection + results.n_analysed == 6 and results.n_analysed == 3
    chosen = min(("liar", "opposite", "game"), key=lambda n: results.selection_behaviour[n].correct.value)
    assert results.lie_variant == chosen and results.lie_variant_chosen_on == "selection half"
    assert results.head_patching == ()


def test_lying_report_names_the_onset_layer_not_the_last():
    from greyglass.job import RunInfo
    from greyglass.probes.config import (Behaviour, LayerPatch, LyingConfig, LyingResults, Onset, ProbeFlip)
    from greyglass.probes.report import lying_section
    from greyglass.stats import Estimate

    share = lambda v: Behaviour(Estimate(v, v - 0.1, v + 0.1), 0.0)  # noqa: E731
    recovery = [0.0, 0.1, 0.6, 0.8, 1.0]
    results = LyingResults(
        n_questions=20, n_selection=10, n_analysed=10, behaviour={"honest": share(0.9), "liar": share(0.1)},
        selection_behaviour={}, lie_variant="liar", lie_variant_chosen_on="selection half", prompt_format="chat",
        n_layers=5, model_lies=True, probe_flip=tuple(ProbeFlip(i, 0.9, 0.9) for i in range(5)),
        layer_patching=tuple(LayerPatch(i, Estimate(r, r - 0.1, r + 0.1), 0.5) for i, r in enumerate(recovery)),
        onset=Onset(2, 1, 3, 0.4, 0.5, True), head_layers=(), head_patching=(), plot="lying_by_layer.svg")
    section = lying_section(results, LyingConfig(), RunInfo(Path("."), {"kind": "probe_lying"}))
    assert "at layer 2 (40% of the depth, 95% CI layers 1-3)" in section.headline
    assert "layer 4" not in section.headline
    assert section.headline in section.summary()


def test_lying_cli_rejects_too_few_questions(capsys):
    assert main(["probe", "lying", "--n-questions", "2"]) == 2
    assert "at least 4" in capsys.readouterr().err


def test_batched_layer_patching_equals_one_layer_at_a_time(tiny_llama):
    from greyglass.models.hooks import capturing, replacing
    from greyglass.probes.lying import HONEST, LIE_VARIANTS, _log_odds, _patch_layers, _shared_suffix, prompt

    honest = [prompt(tiny_llama, "The city of Rome is in Italy.", HONEST, False)]
    lying = [prompt(tiny_llama, "The city of Rome is in Italy.", LIE_VARIANTS["liar"], True)]
    labels = torch.tensor([1])
    c_h, c_l = _log_odds(tiny_llama, honest, labels), _log_odds(tiny_llama, lying, labels)
    batched = _patch_layers(tiny_llama, honest, lying, labels, progress=False)  # [1 question, n_layers]
    hid, lid = (tiny_llama.tokenizer(t, return_tensors="pt").input_ids for t in (honest[0], lying[0]))
    k, site = _shared_suffix(hid, lid), "blocks.1.hook_resid_post"
    with torch.inference_mode(), capturing(tiny_llama, [site]) as acts:
        tiny_llama.model(hid)

    def put(x):
        x = x.clone()
        x[:, -k:] = acts[site][:, -k:]
        return x

    with replacing(tiny_llama, {site: put}):
        c_p = _log_odds(tiny_llama, lying, labels)
    assert float(batched[0, 1]) == pytest.approx(float(c_p), rel=1e-3, abs=1e-4)


def test_batched_head_patching_equals_one_head_at_a_time(tiny_llama):
    from greyglass.probes.lying import (HONEST, LIE_VARIANTS, _log_odds, _patch_heads, _shared_suffix, head_projection,
                                        prompt)

    honest = [prompt(tiny_llama, "Two is larger than one.", HONEST, False)]
    lying = [prompt(tiny_llama, "Two is larger than one.", LIE_VARIANTS["game"], True)]
    labels = torch.tensor([1])
    c_h, c_l = _log_odds(tiny_llama, honest, labels), _log_odds(tiny_llama, lying, labels)
    rows = _patch_heads(tiny_llama, honest, lying, labels, c_h, c_l, [2], progress=False)
    proj, n_heads = head_projection(tiny_llama, 2)
    hid, lid = (tiny_llama.tokenizer(t, return_tensors="pt").input_ids for t in (honest[0], lying[0]))
    k, width = _shared_suffix(hid, lid), 64 // n_heads
    seen = []
    handle = proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    with torch.inference_mode():
        tiny_llama.model(hid)
    handle.remove()

    def put(_m, args):  # head 3 only
        x = args[0].clone()
        x[:, -k:, 3 * width : 4 * width] = seen[0][:, -k:, 3 * width : 4 * width]
        return (x,)

    handle = proj.register_forward_pre_hook(put)
    c_p = _log_odds(tiny_llama, lying, labels)
    handle.remove()
    head3 = next(r for r in rows if r.head == 3)
    assert head3.recovery == pytest.approx(float(c_p - c_l) / float(c_h - c_l), rel=1e-3, abs=1e-4)


def test_transfer_cli_prints_the_report_section(tiny_llama, tmp_path, capsys, write_lines):
    from greyglass.report.build import section_for

    folder = tmp_path / "model"
    tiny_llama.model.save_pretrained(folder)
    tiny_llama.tokenizer.save_pretrained(folder)
    first, second = _public_csv(write_lines, "first_facts.csv"), _public_csv(write_lines, "second_facts.csv")
    out = tmp_path / "transfer"
    assert main(["probe", "transfer", "--model", str(folder), "--data", str(first), "--data", str(second),
                 "--layer", "1", "--n-statements", "40", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    section = section_for(out)
    assert section.summary() in printed and "trained on first_facts, tested on second_facts" in printed
