"""Feature absorption: planted absorption found by the ground-truth rule and by the weights-only
detector, the blocked detector against a dense computation, first-letter benchmark mechanics."""

import numpy as np
import pytest
import torch

from greyglass.sae import SAEConfig, SparseAutoencoder, TrainConfig, load_sparsity, train_saes
from greyglass.sae.absorption import (absorption_rates, first_letter_prompts, k_sparse_latents, vocab_words,
                                      word_activations)
from greyglass.sae.absorption_weights import block_scores, detect_absorption, pair_scores, unit_weights

D, N_FEATURES, PARENT, CHILD = 32, 24, 0, 1


def planted(n: int, seed: int, p_parent=0.2, p_child=0.3, p_other=0.05):
    """Sparse orthogonal features; feature CHILD fires only with PARENT (child implies parent)."""
    dirs = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(0)))[0][:, :N_FEATURES].T
    g = torch.Generator().manual_seed(seed)
    on = torch.rand(n, N_FEATURES, generator=g) < p_other
    on[:, PARENT] = torch.rand(n, generator=g) < p_parent
    on[:, CHILD] = on[:, PARENT] & (torch.rand(n, generator=g) < p_child)
    mags = 1 + 0.2 * torch.rand(n, N_FEATURES, generator=g)
    return (on * mags) @ dirs, on, dirs  # [n, D], [n, F], [F, D]


def _batches(batch_size: int):
    seed = 1
    while True:
        yield {"": planted(batch_size, seed)[0]}
        seed += 1


@pytest.fixture(scope="module")
def absorbed(tmp_path_factory):
    """A TopK SAE (one latent per feature, k=2) trained on the planted data: it absorbs the child."""
    cfg = SAEConfig(architecture="topk", d_in=D, d_sae=N_FEATURES, k=2, k_aux=8, dead_tokens=2000, b_dec_init="zeros")
    out = tmp_path_factory.mktemp("planted")
    result = train_saes([cfg], TrainConfig(tokens=512 * 400, batch_size=512, lr=1e-2, warmup_steps=10),
                        _batches(512), out, progress=False)
    sae = result.saes[0]
    dirs = planted(1, 0)[2]
    dec = sae.W_dec.detach() / sae.W_dec.detach().norm(dim=1, keepdim=True)
    cos = dec @ dirs.T  # [d_sae, F]
    parent, child = int(cos[:, PARENT].argmax()), int(cos[:, CHILD].argmax())
    return sae, parent, child, cos, load_sparsity(result.folders[0]), result.folders[0]


def test_the_trainer_absorbs_the_planted_child(absorbed):
    sae, parent, child, cos, _, _ = absorbed
    assert parent != child
    assert cos[parent, PARENT] > 0.95 and abs(cos[parent, CHILD]) < 0.2  # the parent latent is the parent feature
    assert cos[child, PARENT] > 0.5 and cos[child, CHILD] > 0.5  # the child latent is parent + child


def test_ground_truth_rule_finds_the_absorbed_tokens(absorbed):
    sae, parent, child, _, _, _ = absorbed
    x, on, dirs = planted(4000, seed=999)
    y = on[:, PARENT].numpy()
    with torch.no_grad():
        latents = sae.encode(x)
    train = np.random.default_rng(0).random(len(y)) < 0.7
    # with max_k 1 the single main latent; the default jump would also take the child (it carries
    # 30% of the parent's tokens), which is how k-sparse probing hides heavy absorption
    main, f1 = k_sparse_latents(latents, y, train, max_k=1, f1_jump=0.03)
    assert main == [parent] and 0.7 < f1 < 0.95
    result = absorption_rates(sae, x[on[:, PARENT]], dirs[PARENT], main)
    with_child = on[on[:, PARENT]][:, CHILD]
    # k=2 leaves a spare slot, so on some child tokens the parent latent fires too (partial absorption)
    assert result.absorbed[with_child].float().mean() > 0.5
    assert (result.absorbed | result.partial)[with_child].float().mean() > 0.9
    # parent-alone tokens lose the parent latent only when k=2 is taken by other features
    assert result.absorbed[~with_child].float().mean() < 0.5 * result.absorbed[with_child].float().mean()
    assert set(result.absorber[result.absorbed].tolist()) == {child}


def test_weights_detector_ranks_the_planted_pair_first(absorbed):
    sae, parent, child, _, rates, _ = absorbed
    pairs = detect_absorption(sae, top=10, block=5, log10_rates=rates)
    assert (int(pairs.parents[0]), int(pairs.children[0])) == (parent, child)
    assert pairs.scores[0] > 5 * pairs.scores[1]
    # without firing rates the pair is found but its direction is not reliable
    plain = detect_absorption(sae, top=10, block=5)
    assert {int(plain.parents[0]), int(plain.children[0])} == {parent, child}


def test_blocked_detector_matches_the_dense_computation():
    sae = SparseAutoencoder(SAEConfig(d_in=16, d_sae=40, k=4), seed=3)
    with torch.no_grad():
        sae.W_enc.add_(0.5 * torch.randn(16, 40, generator=torch.Generator().manual_seed(1)))
    dec = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
    enc = (sae.W_enc / sae.W_enc.norm(dim=0, keepdim=True)).T
    cos = dec @ dec.T
    gap = cos * (enc * dec).sum(-1)[:, None] - enc @ dec.T
    dense = (cos.clamp(min=0) * gap.clamp(min=0)).fill_diagonal_(0).detach()
    pairs = detect_absorption(sae, top=25, block=7)
    top = dense.flatten().topk(25)
    torch.testing.assert_close(pairs.scores, top.values)
    torch.testing.assert_close(pair_scores(sae, pairs.parents, pairs.children), pairs.scores.detach())
    scores, _, _ = block_scores(unit_weights(sae), torch.arange(40))
    torch.testing.assert_close(scores.fill_diagonal_(0), dense)


def test_k_sparse_probing_grows_k_while_f1_improves():
    g = torch.Generator().manual_seed(0)
    latents = torch.rand(600, 20, generator=g) * (torch.rand(600, 20, generator=g) < 0.1)
    y = ((latents[:, 3] > 0) | (latents[:, 7] > 0)).numpy()  # the label is carried by two latents
    train = np.arange(600) < 400
    main, f1 = k_sparse_latents(latents, y, train, max_k=10, f1_jump=0.03)
    assert sorted(main) == [3, 7] and f1 > 0.95


def test_first_letter_prompts_put_the_word_at_a_known_position(tiny_llama):
    tok = tiny_llama.tokenizer
    words = vocab_words(tok, 100, min_letters=1, seed=0, leading_space=False)  # bytes: no ' word' tokens
    assert len(words) == 52 and all(w.text.isalpha() and w.letter == w.text.lower() for w in words)
    prompts, rest = first_letter_prompts(tok, words, "{word} has the first letter:", icl_examples=2)
    assert len(rest) == 50 and prompts.ids.shape[0] == 50
    for row, w in zip(prompts.ids[:3], rest[:3]):
        assert int(row[prompts.position]) == w.token
        text = tok.decode(row, skip_special_tokens=True)
        ex = prompts.examples[0]
        assert text.startswith(f"{ex.text} has the first letter: {ex.letter.upper()}\n")
        assert text.endswith(f"\n{w.text} has the first letter:")
    acts = word_activations(tiny_llama, prompts, "blocks.1.hook_resid_post", batch_size=16)
    assert acts.shape == (50, 64)
    from greyglass.models import run_to_sites
    one = run_to_sites(tiny_llama, prompts.ids[7:8], ["blocks.1.hook_resid_post"])["blocks.1.hook_resid_post"]
    torch.testing.assert_close(acts[7], one[0, prompts.position].float())


def test_validation_against_measured_pairs(absorbed):
    from greyglass.sae.absorption_weights import validate

    sae, parent, child, _, rates, _ = absorbed
    pairs = detect_absorption(sae, top=3, block=5, log10_rates=rates)
    v = validate(sae, pairs, {(parent, child)}, [parent])
    assert v["hits"] == 1 and v["recall"] == 1 and v["precision"] == pytest.approx(1 / v["detector_pairs"])
    assert v["auroc"] == 1.0 and v["candidate_pairs"] == N_FEATURES and v["auroc_ci"] == [1.0, 1.0]


def test_absorption_weights_and_meta_commands_write_run_folders(absorbed, tmp_path, capsys):
    import json

    from greyglass.cli import main

    _, parent, child, _, _, folder = absorbed
    assert main(["sae", "absorption-weights", str(folder), "--top", "5", "--block", "7", "--out",
                 str(tmp_path / "w")]) == 0
    results = json.loads((tmp_path / "w" / "results.json").read_text())
    assert (results["pairs"][0]["parent"], results["pairs"][0]["child"]) == (parent, child) and results["used_rates"]
    assert json.loads((tmp_path / "w" / "config.json").read_text())["kind"] == "sae_absorption_weights"
    assert f"{parent} -> {child}" in capsys.readouterr().out
    assert main(["sae", "meta", str(folder), "--no-lens", "--meta-latents", "4", "--k", "2", "--steps", "20",
                 "--no-progress", "--out", str(tmp_path / "m")]) == 0
    results = json.loads((tmp_path / "m" / "results.json").read_text())
    assert results["meta_latents"] == 4 and 0 <= results["fraction_compositional"] <= 1
    assert "meta-SAE with 4 meta-latents" in capsys.readouterr().out
    assert main(["sae", "absorption-weights", str(folder), "--ground-truth", str(tmp_path / "none"),
                 "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
