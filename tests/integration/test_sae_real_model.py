"""SAEs on the real embedded default model (SmolLM2-135M-Instruct)."""

import pytest
import torch

from greyglass import GreyglassError
from greyglass.data import CorpusConfig
from greyglass.sae.architectures import create_sae
from greyglass.sae.config import MetricsConfig, SAEConfig, TopKConfig, TrainConfig
from greyglass.sae.metrics import evaluate
from greyglass.sae.io import load_sae
from greyglass.activations import shuffled_rows, store_windows
from greyglass.sae.train import train_saes
from greyglass.store.config import CaptureConfig
from greyglass.store.reader import ActivationStore
from greyglass.store.writer import capture

SITE = "blocks.15.hook_resid_post"


def test_d_in_mismatch_is_a_clear_error(smollm):
    sae = create_sae(SAEConfig(d_in=64, d_sae=128, arch=TopKConfig(k=4), hook_name=SITE))
    with pytest.raises(GreyglassError, match="d_in = 64 but .* has d_model = 576"):
        evaluate(sae, smollm, MetricsConfig(tokens=10), progress=False)


@pytest.mark.slow
def test_trained_topk_sae_recovers_most_of_the_loss(smollm, tmp_path):
    capture(smollm, CaptureConfig(sites=(SITE,), tokens=8192, batch_tokens=2048),
            CorpusConfig(split="train", context_size=64), tmp_path / "store", progress=False)
    store = ActivationStore(tmp_path / "store")
    cfg = SAEConfig(arch=TopKConfig(k=32), d_in=576, d_sae=1152, dead_tokens=8192, hook_name=SITE,
                    model_name=smollm.spec, context_size=64)
    tcfg = TrainConfig(tokens=8192 * 5, batch_size=1024, lr=1e-3, warmup_steps=5)
    rows = shuffled_rows(lambda epoch: store_windows(store, [SITE], shard_seed=epoch), 1024, tcfg.buffer_tokens)
    result = train_saes([cfg], tcfg, rows, tmp_path / "sae", progress=False)
    sae = load_sae(result.folders[0])
    r = evaluate(sae, smollm, MetricsConfig(tokens=512, batch_windows=8), progress=False)
    assert r.l0 <= 32 + 1e-6 and r.n_tokens >= 512
    assert r.ce_clean < r.ce_sae < r.ce_mean < r.ce_zero  # splicing costs something, far less than ablating
    assert r.kl_sae.value < r.kl_mean < r.kl_zero
    assert r.ce_increase.lo > 0  # a real, measurable loss increase
    assert r.ce_loss_recovered_mean < r.ce_loss_recovered  # mean ablation is the stricter baseline
    assert r.ce_loss_recovered > 0.5
    # ~0.5 after 40k tokens of training; an untrained SAE explains nothing (the sink rows, which
    # once let any SAE reach 0.99, are left out)
    assert r.explained_variance > 0.35 and r.cosine > 0.8
    # the saved SAE reads raw activations exactly as the trained one did
    x = next(store_windows(store, [SITE])).rows()[SITE][:256]
    torch.testing.assert_close(sae.encode(x), result.saes[0].encode(x), rtol=1e-3, atol=1e-3)
