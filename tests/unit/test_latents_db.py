"""Feature database, search and dashboards on a tiny model with a planted latent."""

import json
import re
from html.parser import HTMLParser

import pytest
import torch
from safetensors.torch import save_file

from greyglass.activations import model_windows, take_tokens
from greyglass.cli import main
from greyglass.data import CorpusConfig
from greyglass.errors import GreyglassError
from greyglass.latents.build import build_features
from greyglass.latents.config import ConceptConfig, FeaturesConfig
from greyglass.latents.dashboard import latent_summary, write_html
from greyglass.latents.db import DB_NAME, FeatureDB, set_explanation
from greyglass.latents.source import sequence_latents, text_latents
from greyglass.sae.io import load_sae
from greyglass.job import RunInfo
from greyglass.models.hooks import run_to_sites
from greyglass.report.build import section_for

SITE = "blocks.1.hook_resid_post"
PLANTED, D_SAE = 5, 32


def save_sae_folder(folder, W_enc, b_enc, W_dec, b_dec, site=SITE, architecture="standard"):
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"W_enc": W_enc.contiguous(), "b_enc": b_enc, "W_dec": W_dec.contiguous(), "b_dec": b_dec},
              str(folder / "sae_weights.safetensors"))
    cfg = {"architecture": architecture, "d_in": W_enc.shape[0], "d_sae": W_enc.shape[1],
           "metadata": {"hook_name": site, "model_name": "tiny-llama"}}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


@pytest.fixture(scope="module")
def planted(tiny_llama, tmp_path_factory):
    """A random SAE whose latent 5 fires exactly on the byte 'q' (a separating direction)."""
    lm = tiny_llama
    ids = lm.tokenizer(["the quick queen quietly quoted a quaint quip", "aqua quest equals quota"],
                       return_tensors="pt", padding=True).input_ids
    acts = run_to_sites(lm, ids, [SITE])[SITE].reshape(-1, lm.d_model)
    is_q = (ids == lm.tokenizer.convert_tokens_to_ids("q")).reshape(-1)
    w = acts[is_q].mean(0) - acts[~is_q].mean(0)
    proj = acts @ w
    assert proj[is_q].min() > proj[~is_q].max(), "setup: 'q' must be linearly separable at this site"
    threshold = (proj[is_q].min() + proj[~is_q].max()) / 2
    g = torch.Generator().manual_seed(0)
    W_enc = torch.randn(lm.d_model, D_SAE, generator=g) * 0.05
    b_enc = torch.zeros(D_SAE)
    W_enc[:, PLANTED], b_enc[PLANTED] = w * 10, -threshold * 10
    W_dec = torch.randn(D_SAE, lm.d_model, generator=g)
    folder = save_sae_folder(tmp_path_factory.mktemp("sae") / "sae", W_enc, b_enc, W_dec, torch.zeros(lm.d_model))
    sae = load_sae(folder)
    out = folder / "features"
    cfg = FeaturesConfig(tokens=3000, top_k=8, n_samples=8, window=4)
    batches = take_tokens(model_windows(lm, [SITE], CorpusConfig(context_size=64), cfg.batch_windows), cfg.tokens)
    summary = build_features(lm, sae, batches, cfg, out, {"sae": str(folder), "model": lm.name}, progress=False)
    return lm, sae, out, summary


def test_build_summary(planted):
    _, _, out, summary = planted
    assert summary.n_tokens >= 3000 and summary.d_sae == D_SAE and summary.site == SITE
    assert (out / DB_NAME).is_file()


def test_fires_on_returns_planted_latent(planted):
    db = FeatureDB(planted[2])
    hits = db.fires_on("q")
    assert hits[0]["latent"] == PLANTED
    assert db.fires_on("Q") == hits  # case-insensitive
    row = db.latent(PLANTED)
    assert all(c["tokens"][c["centre_index"]][0] == "q" for c in row["top"] + row["quantile"])
    assert row["label"].startswith("q")


def test_label_search_and_most_active_on_text(planted):
    lm, sae, out, _ = planted
    set_explanation(out / DB_NAME, PLANTED, "the letter q, as in money-free words like quest", 0.9)
    db = FeatureDB(out)
    assert [r["latent"] for r in db.search("money")] == [PLANTED]
    assert db.latent(PLANTED)["detection"] == 0.9
    with pytest.raises(GreyglassError):
        db.search('"unclosed')
    acts = text_latents(lm, sae, ["a quiet quiz", "no such letter here"])
    assert acts[0].argmax() == PLANTED and acts[1, PLANTED] == 0


def _without_bos(lm):
    """The same weights behind a tokenizer that adds no BOS: the first token becomes the attention sink."""
    from dataclasses import replace

    from greyglass.models.tiny import byte_tokenizer

    return replace(lm, tokenizer=byte_tokenizer(add_bos=False), prepend_bos=False)


def test_text_latents_leave_out_the_sink_of_a_model_without_bos(planted):
    """'q' only at position 0: the SAE never saw that position (SAE training leaves it out), so it must not count."""
    lm, sae, _, _ = planted
    nobos = _without_bos(lm)
    acts = text_latents(nobos, sae, ["quiet hour", "a quiet hour", "q"])
    assert acts[0, PLANTED] == 0 and acts[1, PLANTED] > 0  # the q of "quiet" counts only after the first position
    assert not acts[2].any()  # a one-token text is all sink: nothing to report
    ids = nobos.tokenizer("a quiet hour", return_tensors="pt").input_ids
    manual = sae.encode(run_to_sites(nobos, ids, [SITE])[SITE][0, 1:]).amax(0)
    torch.testing.assert_close(acts[1], manual)


def test_text_latents_leave_out_outlier_rows(planted, loud_llama):
    """An outlier row (here every "v", its embedding 200x too long) gets no latents: SAEs never train on such rows."""
    _, sae, _, _ = planted
    lm, v = loud_llama
    ids = lm.tokenizer("very vivid", return_tensors="pt").input_ids
    latents, counted = sequence_latents(lm, sae, ids.tolist())
    is_v = ids == v
    assert torch.equal(counted[:, 1:], ~is_v[:, 1:]) and is_v.sum() == 3
    assert not latents[is_v].any() and latents[counted].any()
    torch.testing.assert_close(latents[counted], sae.encode(run_to_sites(lm, ids, [SITE])[SITE][counted]))


def test_browser_token_latents_show_nothing_on_the_sink(planted):
    from greyglass.serve.live import LiveModel

    lm, sae, _, _ = planted
    view = LiveModel().token_latents(_without_bos(lm), sae, "qq", k=3)
    assert view.top[0] == [] and PLANTED in [j for j, _ in view.top[1]]
    with_bos = LiveModel().token_latents(lm, sae, "qq", k=3)  # BOS is hidden; both q's are real tokens
    assert len(with_bos.tokens) == 2 and all(PLANTED in [j for j, _ in top] for top in with_bos.top)


def test_latent_summary_and_bad_latent(planted):
    db = FeatureDB(planted[2])
    text = latent_summary(db, PLANTED)
    assert f"latent {PLANTED}" in text and "[[q]]" in text
    with pytest.raises(GreyglassError, match="out of range"):
        db.latent(D_SAE)


def test_html_dashboards_are_self_contained(planted, tmp_path):
    db = FeatureDB(planted[2])
    out = write_html(db, tmp_path / "html")
    pages = sorted(out.glob("*.html"))
    assert out / "index.html" in pages and out / f"latent_{PLANTED}.html" in pages
    for page in pages:
        text = page.read_text()
        tags = []
        parser = HTMLParser()
        parser.handle_starttag = lambda tag, attrs: tags.append((tag, dict(attrs)))
        parser.feed(text)
        assert not {"script", "link", "img", "iframe"} & {t for t, _ in tags}
        urls = [a[k] for _, a in tags for k in ("href", "src") if a.get(k)]
        assert all(not re.match(r"^[a-z]+:", u) and not u.startswith("//") for u in urls), page
        assert "http" not in text and not re.search(r"url\(|@import", text)
        assert len(text) < 200_000
    planted_page = (out / f"latent_{PLANTED}.html").read_text()
    assert "<svg" in planted_page and "rgba(230,120,40,1.00)" in planted_page


def test_load_sae_errors(tmp_path):
    with pytest.raises(GreyglassError, match="cfg.json is missing"):
        load_sae(tmp_path)
    folder = save_sae_folder(tmp_path / "s", torch.zeros(8, 4), torch.zeros(4), torch.zeros(5, 8), torch.zeros(8))
    with pytest.raises(GreyglassError, match="W_dec has shape"):
        load_sae(folder)


def _concept_file(tmp_path, sentences, controls):
    path = tmp_path / "q.json"
    path.write_text(json.dumps({"name": "letter-q", "description": "words with q",
                                "sentences": sentences, "controls": controls}))
    return str(path)


Q_SENTENCES = ["a quiet quiz", "the queen", "quite a quip", "quick quota", "aqua quest", "the quaint queen"]
NO_Q = ["hello there", "a big dog", "bonjour", "le chat", "zzz", "abc", "the red hat", "a long walk"]


def _concept_section(result, tmp_path):
    from greyglass.latents.report import concept_section

    return concept_section(result, ConceptConfig(sae="sae"), RunInfo(tmp_path, {}))


def test_concept_ranks_the_planted_latent_first(planted, tmp_path):
    from greyglass.latents.concept import concept_table, load_concept

    lm, sae, _, _ = planted
    langs = ["xx", "yy", "zz"]  # not in NTREX-128, whose news lines have q's ("que", "quite")
    concept = load_concept(_concept_file(tmp_path, {lang: Q_SENTENCES for lang in langs},
                                         {lang: NO_Q for lang in langs}))
    result = concept_table(lm, sae, concept, ntrex=2, top=3)
    best = result.ranked[0]
    assert best.latent == PLANTED and best.languages == 3 and best.carries == tuple(langs)
    # every held-out q sentence outscores every held-out control, in every resample
    assert tuple(best.heldout_auroc) == (1.0, 1.0, 1.0)
    assert (result.heldout.concept_sentences, result.heldout.control_sentences) == (3, 4)  # the odd ids
    section = _concept_section(result, tmp_path)
    assert "it separates the concept from the controls: AUROC 1.00 (1.00 to 1.00)" in section.headline
    assert section.numbers[0] == (f"latent {PLANTED}", "carries it in 3 of 3 languages (xx, yy, zz); mean margin over "
                                  f"controls {best.mean_margin:.3g}; AUROC concept vs controls on held-out sentences "
                                  "1.00 (1.00 to 1.00)")


def test_concept_scores_latents_on_sentences_it_did_not_rank_with(planted, tmp_path):
    """q only in the even-numbered (ranking) sentences: the planted latent wins the ranking, and
    the held-out AUROC, from the odd-numbered sentences, shows that it does not carry over."""
    from greyglass.latents.concept import concept_table, language_sentences, load_concept

    lm, sae, _, _ = planted
    mixed = [s if i % 2 == 0 else t for i, (s, t) in enumerate(zip(Q_SENTENCES, NO_Q[2:]))]
    concept = load_concept(_concept_file(tmp_path, {"en": mixed, "fr": mixed}, {"en": NO_Q, "fr": NO_Q}))
    split = language_sentences(concept, "fr", ntrex=3)
    held = [split.texts[i] for i in split.side(True)]
    assert held == mixed[1::2] + NO_Q[1::2] + split.texts[-6:][1::2]  # odd ids of each part, NTREX lines included
    result = concept_table(lm, sae, concept, ntrex=3, top=3)
    best = result.ranked[0]
    assert best.latent == PLANTED and best.ranking_auroc == 1.0
    assert best.heldout_auroc.value <= 0.5 and best.heldout_auroc.lo <= 0.5
    assert "does not show that it separates" in _concept_section(result, tmp_path).headline


def test_concept_gives_no_interval_from_too_few_held_out_sentences(planted, tmp_path):
    from greyglass.latents.concept import concept_table, load_concept

    lm, sae, _, _ = planted
    concept = load_concept(_concept_file(tmp_path, {"en": Q_SENTENCES[:3]}, {"en": NO_Q}))
    result = concept_table(lm, sae, concept, ntrex=0, top=2)
    held = result.ranked[0].heldout_auroc
    assert held.value == 1.0 and held.lo != held.lo  # NaN: one held-out concept sentence
    assert "too few held-out concept sentences for an interval" in _concept_section(result, tmp_path).headline


def test_concept_needs_sentences_on_both_sides(planted, tmp_path):
    from greyglass.latents.concept import concept_table, load_concept

    lm, sae, _, _ = planted
    concept = load_concept(_concept_file(tmp_path, {"en": Q_SENTENCES, "xx": ["qqq"]}, {"en": NO_Q, "xx": NO_Q}))
    with pytest.raises(GreyglassError, match="language 'xx': no held-out .* concept sentences"):
        concept_table(lm, sae, concept, ntrex=0)


def test_concept_file_errors(tmp_path):
    from greyglass.latents.concept import builtin_concepts, load_concept

    assert {"bridge", "disease", "money", "deception", "code_bug"} <= set(builtin_concepts())
    assert len(builtin_concepts()["bridge"].sentences) >= 8
    from greyglass.latents.concept import MIN_HELDOUT_CONCEPT, is_heldout

    for concept in builtin_concepts().values():  # enough held-out (odd-numbered) sentences for an interval
        assert {sum(map(is_heldout, range(len(s)))) for s in concept.sentences.values()} == {MIN_HELDOUT_CONCEPT}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"sentences": {"en": []}}))
    with pytest.raises(GreyglassError, match="'sentences' must map"):
        load_concept(str(bad))
    with pytest.raises(GreyglassError, match="neither built in"):
        load_concept("no-such-concept")


def test_steering_adds_or_clamps_the_decoder_row(planted):
    from greyglass.latents.intervene import latent_effect, latent_steering, target_probability
    from greyglass.models.hooks import capturing

    lm, sae, _, _ = planted
    ids = lm.tokenizer("a quiet quiz", return_tensors="pt").input_ids
    row = sae.W_dec[PLANTED]
    with torch.inference_mode(), capturing(lm, [SITE]) as base:
        lm.model(input_ids=ids)
    x = base[SITE]
    with torch.inference_mode(), latent_steering(lm, sae, PLANTED, 3.0, "add"), capturing(lm, [SITE]) as added:
        lm.model(input_ids=ids)
    assert torch.allclose(added[SITE] - x, 3.0 * row.expand_as(x), atol=1e-5)
    a = sae.encode(x.reshape(-1, lm.d_model))[:, PLANTED].reshape(x.shape[:-1])
    with torch.inference_mode(), latent_steering(lm, sae, PLANTED, 7.0, "clamp"), capturing(lm, [SITE]) as clamped:
        lm.model(input_ids=ids)
    assert torch.allclose(clamped[SITE] - x, (7.0 - a)[..., None] * row, atol=1e-4)
    rows = latent_effect(lm, sae, PLANTED, [0.0, 20.0], ["q", "z"], mode="add", prompts=["abc", "the "])
    qz = sorted(lm.tokenizer.convert_tokens_to_ids(["q", "z"]))
    assert rows[0].per_prompt == pytest.approx(target_probability(lm, ["abc", "the "], qz), abs=1e-6)
    assert rows[1].per_prompt != rows[0].per_prompt


@pytest.fixture
def stub_server():
    """A local OpenAI-compatible stub on a loopback port: fails the first request, then answers by rule."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    calls = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][0]["content"]
            calls.append(prompt)
            if len(calls) == 1:
                self.send_response(503)
                self.end_headers()
                return
            if "what does this feature detect" in prompt:
                answer = "the letter q" if "<<q>>" in prompt else "something else"
            else:  # detection: pick the numbered snippets that contain a q
                answer = ",".join(n for n, text in re.findall(r"^(\d+)\. (.*)$", prompt, re.M) if "q" in text) or "none"
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", calls
    server.shutdown()
    server.server_close()


def test_explainer_client_against_local_stub(planted, stub_server, tmp_path):
    import shutil

    from greyglass.latents.explainer import ExplainerClient, explain_latents
    from greyglass.http_client import JsonClient

    url, calls = stub_server
    db_path = tmp_path / DB_NAME
    shutil.copy(planted[2] / DB_NAME, db_path)
    client = ExplainerClient(JsonClient(url, timeout_s=5, retries=2, backoff_s=0.01))
    out = {r.latent: r for r in explain_latents(FeatureDB(db_path), db_path, client, n=40)}
    assert len(calls) >= 3  # the first (503) was retried
    assert out[PLANTED].explanation == "the letter q" and out[PLANTED].detection == 1.0
    assert PLANTED in [r["latent"] for r in FeatureDB(db_path).search("letter")]
    dead = ExplainerClient(JsonClient("http://127.0.0.1:9/v1", timeout_s=0.5, retries=1, backoff_s=0.01))
    with pytest.raises(GreyglassError, match="chat/completions: no answer after 2 tries"):
        dead.chat("hi")


def test_store_source_matches_on_the_fly(planted, tmp_path):
    from greyglass.activations import store_windows
    from greyglass.latents.source import encode_batch
    from greyglass.latents.stats import StatsAccumulator
    from greyglass.store.config import CaptureConfig
    from greyglass.store.reader import ActivationStore
    from greyglass.store.writer import capture

    lm, sae, _, _ = planted
    corpus = CorpusConfig(context_size=64)
    capture(lm, CaptureConfig(sites=(SITE,), tokens=16 * 63, batch_tokens=512, shard_tokens=300), corpus,
            tmp_path / "store", progress=False)
    results = []
    for batches in (take_tokens(store_windows(ActivationStore(tmp_path / "store"), [SITE]), 1000),
                    take_tokens(model_windows(lm, [SITE], corpus), 1000)):
        acc = StatsAccumulator(D_SAE, k=5, n_samples=5, window=3)
        for b in batches:
            acc.update(b.tokens, encode_batch(sae, b.acts[SITE], b.mask), b.mask)
        results.append(acc.result())
    from_store, on_the_fly = results
    assert from_store.n_tokens == on_the_fly.n_tokens == 16 * 63  # whole windows, BOS excluded
    assert (from_store.n_active - on_the_fly.n_active).abs().max() <= 2  # float noise at the ReLU edge only
    assert (from_store.top.where == on_the_fly.top.where).float().mean() > 0.95
    same = from_store.top.where == on_the_fly.top.where
    assert torch.equal(from_store.top.tokens[same], on_the_fly.top.tokens[same])


@pytest.fixture(scope="module")
def model_dir(tiny_llama, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama.model.save_pretrained(folder)
    tiny_llama.tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def sae_copy(planted, tmp_path):
    """The planted SAE's folder without its feature database."""
    folder = tmp_path / "sae"
    folder.mkdir()
    for name in ("cfg.json", "sae_weights.safetensors"):
        (folder / name).write_bytes((planted[2].parent / name).read_bytes())
    return folder


def test_features_build_and_concept_cli_print_their_report_sections(sae_copy, model_dir, tmp_path, capsys):
    concept = _concept_file(tmp_path, {"xx": Q_SENTENCES, "yy": Q_SENTENCES}, {"xx": NO_Q, "yy": NO_Q})
    before = tmp_path / "concept-before"
    assert main(["features", "concept", str(sae_copy), "--model", model_dir, "--concept", concept, "--ntrex", "0",
                 "--top", "3", "--out", str(before)]) == 0
    printed = capsys.readouterr().out
    assert section_for(before).summary() in printed and "none: no feature database" in printed
    assert main(["features", "build", str(sae_copy), "--model", model_dir, "--tokens", "3000", "--context-size", "64",
                 "--top-k", "4", "--n-samples", "4", "--window", "3", "--no-progress"]) == 0
    built = sae_copy / "features"  # the default: beside the SAE, where show/html/search/concept look
    printed = capsys.readouterr().out
    assert section_for(built).summary() in printed and (built / DB_NAME).is_file()
    config = json.loads((built / "config.json").read_text())
    assert config["kind"] == "features" and config["config"]["features"]["tokens"] == 3000
    assert config["config"]["corpus"]["context_size"] == 64 and len(config["data_fingerprint"]) == 64
    after = tmp_path / "concept-after"
    assert main(["features", "concept", str(sae_copy), "--model", model_dir, "--concept", concept, "--ntrex", "0",
                 "--top", "3", "--out", str(after)]) == 0
    printed = capsys.readouterr().out
    assert section_for(after).summary() in printed
    results = json.loads((after / "results.json").read_text())
    assert results["ranked"][0]["latent"] == PLANTED and results["ranked"][0]["carries"] == ["xx", "yy"]
    assert all((after / r["dashboard"]).is_file() for r in results["ranked"])
    assert main(["features", "show", str(sae_copy), str(PLANTED)]) == 0
    assert f"latent {PLANTED}" in capsys.readouterr().out
    assert main(["features", "search", str(sae_copy), "--fires-on", "q"]) == 0
    assert f"  {PLANTED:>6}" in capsys.readouterr().out


def test_features_build_checks_the_store_was_captured_from_the_same_model(sae_copy, model_dir, tmp_path, capsys):
    from greyglass.models.tiny import tiny_model
    from greyglass.store.config import CaptureConfig
    from greyglass.store.writer import capture

    other = tiny_model("llama", seed=1)
    capture(other, CaptureConfig(sites=(SITE,), tokens=200), CorpusConfig(context_size=32), tmp_path / "store",
            progress=False)
    assert main(["features", "build", str(sae_copy), "--model", model_dir, "--store", str(tmp_path / "store"),
                 "--no-progress"]) == 2
    assert "pass the same --model the store was captured with" in capsys.readouterr().err


def test_steer_feature_cli_prints_its_report_section(sae_copy, model_dir, tmp_path, capsys):
    out = tmp_path / "steer"
    assert main(["steer-feature", "--sae", str(sae_copy), "--latent", str(PLANTED), "--value", "20", "--mode", "add",
                 "--prompt", "abc", "--max-new-tokens", "4", "--target-word", "q", "--values", "0", "--values", "20",
                 "--model", model_dir, "--out", str(out)]) == 0
    assert section_for(out).summary() in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert [r["value"] for r in results["effect"]] == [0.0, 20.0] and results["generations"][0]["prompt"] == "abc"
    assert results["effect"][0]["p_target"]["value"] == pytest.approx(results["baseline_p_target"]["value"], rel=1e-4)
    assert (out / "effect.svg").read_text().startswith("<svg")
    with pytest.raises(SystemExit):  # a field without a default is a required flag
        main(["steer-feature", "--sae", str(sae_copy), "--latent", str(PLANTED), "--model", model_dir])
    assert "required: --value" in capsys.readouterr().err


def _steer_results(base, rows):
    from greyglass.latents.config import SteerFeatureResults, TargetProbability
    from greyglass.stats import Estimate

    return SteerFeatureResults(latent=3, site=SITE, mode="clamp", value=10.0, target_words=("bridge",),
                               generations=(), n_prompts=8, baseline_p_target=Estimate(*base),
                               effect=tuple(TargetProbability(v, Estimate(*p), ()) for v, p in rows), plot="")


@pytest.mark.parametrize("rows, says", [
    ([(0.0, (0.01, 0.005, 0.02)), (10.0, (0.2, 0.1, 0.3))], "raises the chance"),
    ([(10.0, (0.001, 0.0, 0.004))], "lowers the chance"),
    ([(5.0, (0.03, 0.015, 0.05)), (10.0, (0.1, 0.019, 0.3))], "did not reliably change"),  # both overlap 0.01-0.02
])
def test_steer_feature_headline_claims_only_what_the_intervals_support(tmp_path, rows, says):
    from greyglass.latents.report import steer_feature_section

    section = steer_feature_section(_steer_results((0.01, 0.005, 0.02), rows), None, RunInfo(tmp_path, {}))
    assert says in section.headline


def test_demo_step_builds_features_from_the_store_and_ranks_the_bridge_latents(planted, sae_copy, tmp_path, capsys):
    import shutil

    from greyglass.demo import demo_runs, run_demo
    from greyglass.report.build import build_report
    from greyglass.store.config import CaptureConfig
    from greyglass.store.writer import capture

    lm = planted[0]
    capture(lm, CaptureConfig(sites=(SITE,), tokens=600), CorpusConfig(context_size=32), tmp_path / "capture",
            progress=False)
    shutil.copytree(sae_copy, tmp_path / "sae" / "sae")  # where the demo's training step puts its SAE
    run_demo(lm, tmp_path, [r for r in demo_runs(tmp_path, lm.n_layers, 500) if r.name.startswith("features")])
    printed = capsys.readouterr().out
    for name in ("features", "features_concept"):
        assert section_for(tmp_path / name).summary() in printed
    assert json.loads((tmp_path / "features" / "config.json").read_text())["config"]["store"] == str(tmp_path / "capture")
    results = json.loads((tmp_path / "features_concept" / "results.json").read_text())
    assert results["concept"] == "bridge" and len(results["ranked"]) == 5 and results["dashboards"]
    html = build_report([tmp_path / "features", tmp_path / "features_concept"], tmp_path / "report.html").read_text()
    assert "What the sparse autoencoder&#39;s features respond to" in html and "concept activation by language" in html


def test_ctrl_c_keeps_the_tokens_already_read(planted, tmp_path):
    lm, sae, _, _ = planted

    def interrupted():
        batches = model_windows(lm, [SITE], CorpusConfig(context_size=64))
        yield next(batches)
        yield next(batches)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_features(lm, sae, interrupted(), FeaturesConfig(tokens=10_000), tmp_path, {"sae": "x"}, progress=False)
    db = FeatureDB(tmp_path)
    assert db.meta["complete"] is False and db.meta["n_tokens"] == 2 * 8 * 63
