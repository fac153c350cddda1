"""SAE evaluation on a tiny model: which predictions the losses count, the ablation baselines, the words."""

import math
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F

from greyglass import GreyglassError
from greyglass.data import CorpusConfig, windows
from greyglass.data.corpus import corpus_fingerprint
from greyglass.sae.architectures import create_sae
from greyglass.sae.config import MetricsConfig, ReLUConfig, SAEConfig, TopKConfig
from greyglass.sae.metrics import evaluate
from greyglass.sae.heldout import heldout_status, store_training_text
from greyglass.sae.model import SparseAutoencoder
from greyglass.sae.report import damage

SITE = "blocks.2.hook_resid_post"
CORPUS = CorpusConfig(split="heldout", context_size=16)
ECFG = MetricsConfig(tokens=150, batch_windows=4)


def _exact_sae(d_in: int = 64) -> SparseAutoencoder:
    """relu(x) - relu(-x) = x: a 'perfect' SAE whose splice changes nothing."""
    sae = create_sae(SAEConfig(arch=ReLUConfig(), d_in=d_in, d_sae=2 * d_in, hook_name=SITE, norm_scale=1.0))
    eye = torch.eye(d_in)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
    return sae


def test_the_losses_leave_out_the_prediction_made_at_the_first_position(tiny_llama):
    r = evaluate(create_sae(SAEConfig(d_in=64, d_sae=128, arch=TopKConfig(k=4), hook_name=SITE)), tiny_llama, ECFG, CORPUS,
                 progress=False)
    ws = [w.tokens for w in windows(tiny_llama.tokenizer, CORPUS, tiny_llama.prepend_bos)][:12]  # 3 batches of 4
    ids = torch.tensor(ws)
    with torch.no_grad():
        logits = tiny_llama.model(input_ids=ids).logits
    # position 0 predicts token 1 from the first token alone: the same in every run, so not counted
    expected = F.cross_entropy(logits[:, 1:-1].flatten(0, 1), ids[:, 2:].flatten()).item()
    assert r.n_tokens == 12 * 15 and r.n_predictions == 12 * 14
    assert r.ce_clean == pytest.approx(expected, rel=1e-5)


def test_a_perfect_sae_costs_nothing_and_recovers_everything_against_both_ablations(tiny_llama):
    r = evaluate(_exact_sae(), tiny_llama, ECFG, CORPUS, progress=False)
    assert r.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert r.ce_increase.value == pytest.approx(0.0, abs=1e-5) and r.kl_sae.value == pytest.approx(0.0, abs=1e-5)
    assert r.ce_loss_recovered == pytest.approx(1.0, abs=1e-4)
    assert r.ce_loss_recovered_mean == pytest.approx(1.0, abs=1e-4)
    assert r.ce_mean != r.ce_zero and r.kl_mean > 0
    assert damage(r) == "no worse that this evaluation can detect"


def test_a_random_sae_is_measured_against_mean_ablation_and_says_how_much_worse(tiny_llama):
    r = evaluate(create_sae(SAEConfig(d_in=64, d_sae=128, arch=TopKConfig(k=4), hook_name=SITE)), tiny_llama, ECFG, CORPUS,
                 progress=False)
    assert r.ce_loss_recovered_mean == pytest.approx((r.ce_mean - r.ce_sae) / (r.ce_mean - r.ce_clean))
    ci = r.ce_increase
    assert ci.value == pytest.approx(r.ce_sae - r.ce_clean)
    assert ci.lo <= ci.value <= ci.hi and ci.lo < ci.hi
    assert r.perplexity_ratio == pytest.approx(math.exp(ci.value))
    assert r.heldout.verified is False and "no record of the SAE's training text" in r.heldout.reason


def test_a_store_from_before_the_documents_record_is_checked_by_its_corpus_fingerprint(write_lines):
    corpus = CorpusConfig(corpus=str(write_lines("c.txt", ["some text"])), split="train")
    old = {"corpus": {**asdict(corpus), "fingerprint": corpus_fingerprint(corpus)}}  # no "documents" key
    heldout = CorpusConfig(corpus=corpus.corpus, split="heldout", seed=7, context_size=64)
    assert heldout_status(store_training_text(old), heldout, "sae").verified is True
    write_lines("c.txt", ["the corpus changed since the capture"])
    with pytest.raises(GreyglassError, match="has changed or moved since the capture"):
        heldout_status(store_training_text(old), heldout, "sae")
    assert heldout_status(store_training_text(old), heldout, "sae", allow_unverified=True).verified is False
