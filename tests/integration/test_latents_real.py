"""The feature commands end to end on the real embedded model, with a random SAE folder."""

import json

import pytest
import torch
from safetensors.torch import save_file

from greyglass.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sae_folder(tmp_path_factory):
    """A random TopK SAE at blocks.3.hook_resid_post of SmolLM2 (d_in 576), SAELens layout."""
    folder = tmp_path_factory.mktemp("sae")
    g = torch.Generator().manual_seed(0)
    W_dec = torch.randn(256, 576, generator=g)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    save_file({"W_enc": W_dec.t().contiguous(), "W_dec": W_dec, "b_enc": torch.zeros(256), "b_dec": torch.zeros(576)},
              str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"architecture": "topk", "k": 8, "d_in": 576, "d_sae": 256,
                                                 "metadata": {"hook_name": "blocks.3.hook_resid_post"}}))
    return folder


def test_build_show_html_search_concept_steer(sae_folder, tmp_path, capsys):
    assert main(["features", "build", str(sae_folder), "--tokens", "1000", "--context-size", "64", "--no-progress"]) == 0
    results = json.loads((sae_folder / "features" / "results.json").read_text())
    config = json.loads((sae_folder / "features" / "config.json").read_text())
    assert results["n_tokens"] >= 1000 and results["mean_l0"] == pytest.approx(8.0, abs=0.01)
    assert config["kind"] == "features" and config["model"]["d_model"] == 576
    live = next(j for j in range(256) if main(["features", "show", str(sae_folder), str(j)]) == 0
                and "density 0.0000%" not in capsys.readouterr().out)
    assert main(["features", "show", str(sae_folder), str(live)]) == 0
    assert "top contexts" in capsys.readouterr().out
    assert main(["features", "html", str(sae_folder), "--out", str(tmp_path / "html"), "--latent", str(live)]) == 0
    assert (tmp_path / "html" / f"latent_{live}.html").is_file()
    assert main(["features", "search", str(sae_folder), "--fires-on", "the", "--text", "The Golden Gate Bridge"]) == 0
    assert "latents most active on the text" in capsys.readouterr().out
    out = tmp_path / "concept"
    assert main(["features", "concept", str(sae_folder), "--concept", "bridge", "--ntrex", "1", "--top", "3",
                 "--out", str(out)]) == 0
    concept = json.loads((out / "results.json").read_text())
    assert len(concept["languages"]) == 10 and len(concept["ranked"]) == 3
    assert all((out / r["dashboard"]).is_file() for r in concept["ranked"])
    assert concept["heldout"] == {"concept_sentences": 3, "control_sentences": 3 + 1}  # odd ids: built-in + NTREX
    assert all(r["heldout_auroc"]["ci_low"] <= r["heldout_auroc"]["value"] <= r["heldout_auroc"]["ci_high"]
               for r in concept["ranked"])
    steer = tmp_path / "steer"
    assert main(["steer-feature", "--sae", str(sae_folder), "--latent", str(live), "--value", "40", "--mode", "add",
                 "--prompt", "Hello", "--max-new-tokens", "4", "--values", "0", "--values", "40",
                 "--out", str(steer)]) == 0
    results = json.loads((steer / "results.json").read_text())
    assert [r["value"] for r in results["effect"]] == [0.0, 40.0]
    assert results["effect"][0]["p_target"]["value"] == pytest.approx(results["baseline_p_target"]["value"], rel=1e-4)
    assert (steer / "effect.svg").read_text().startswith("<svg")
    from greyglass.report.build import build_report

    html = build_report([steer, out], tmp_path / "report.html").read_text()
    assert f"Steering with feature {live}" in html and "A concept across languages: bridge" in html


def test_text_latents_leave_out_smollm2s_first_token(sae_folder, smollm):
    """SmolLM2 has no BOS: its first token is the attention sink, which SAE training leaves out."""
    from greyglass.sae.io import load_sae
    from greyglass.latents.source import text_latents
    from greyglass.models.hooks import run_to_sites

    sae, site = load_sae(sae_folder), "blocks.3.hook_resid_post"
    ids = smollm.tokenizer("The Golden Gate Bridge", return_tensors="pt").input_ids
    assert not smollm.prepend_bos and ids[0, 0] != smollm.tokenizer.bos_token_id
    acts = run_to_sites(smollm, ids, [site])[site][0].float()
    with torch.inference_mode():
        want = sae.encode(acts[1:].to(sae.W_dec.dtype)).float().amax(0)
        with_sink = sae.encode(acts.to(sae.W_dec.dtype)).float().amax(0)
    got = text_latents(smollm, sae, ["The Golden Gate Bridge"])[0]
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, with_sink)  # the sink does change the answer: leaving it out matters
