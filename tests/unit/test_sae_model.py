"""SAE architectures: shapes, losses, the sparse path against a dense reference, folding."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from greyglass.sae.architectures import TopKSAE, create_sae
from greyglass.sae.config import BatchTopKConfig, JumpReLUConfig, MatryoshkaConfig, ReLUConfig, SAEConfig, TopKConfig
from greyglass import GreyglassError

ARCHS = {"relu": ReLUConfig(), "topk": TopKConfig(k=4, k_aux=8), "batchtopk": BatchTopKConfig(k=4, k_aux=8),
         "matryoshka": MatryoshkaConfig(k=4, k_aux=8, widths=(6, 24)), "jumprelu": JumpReLUConfig()}


def _x(n=64, d=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen) * 3 + 1


def _sae(arch, **settings):
    """An SAE of `arch` with its config's `settings` changed, initialised from a batch."""
    sae = create_sae(SAEConfig(arch=replace(ARCHS[arch], **settings), d_in=16, d_sae=48), seed=0)
    sae.initialise_from(_x())
    return sae


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_architecture_trains_a_step(arch):
    sae = _sae(arch, **({"init_threshold": 0.5, "bandwidth": 2.0} if arch == "jumprelu" else {}))
    x = _x(seed=1)
    out = sae(x, dead=torch.ones(48, dtype=torch.bool))
    assert out.reconstruction.shape == x.shape and out.loss.ndim == 0
    out.loss.backward()
    for name, p in sae.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert sae.W_enc.grad.abs().sum() > 0 and sae.W_dec.grad.abs().sum() > 0
    if arch == "jumprelu":
        assert sae.threshold.grad.abs().sum() > 0  # the straight-through estimator reaches the thresholds
    if arch in ("topk", "batchtopk", "matryoshka"):
        assert out.aux > 0  # AuxK is on when latents are dead
        assert out.l0.item() == pytest.approx(4.0, abs=1e-6)


def test_norm_scale_brings_mean_norm_to_sqrt_d_in():
    sae = _sae("topk")
    x = _x()
    assert (x * sae.scale).norm(dim=-1).mean().item() == pytest.approx(4.0, rel=1e-5)


def test_topk_sparse_training_path_matches_a_dense_reference():
    sae = _sae("topk")
    x = _x(seed=2)
    out = sae(x)
    sparse_grads = torch.autograd.grad(out.mse, list(sae.parameters()))
    xn = x * sae.scale
    pre = (xn - sae.b_dec) @ sae.W_enc + sae.b_enc
    idx = pre.topk(4, dim=-1).indices
    latents = torch.zeros_like(pre).scatter(1, idx, F.relu(pre.gather(1, idx)))
    recon = latents @ sae.W_dec + sae.b_dec
    mse = (recon - xn).pow(2).sum(-1).mean()
    torch.testing.assert_close(out.mse, mse)
    torch.testing.assert_close(out.reconstruction, recon / sae.scale)
    for a, b in zip(sparse_grads, torch.autograd.grad(mse, list(sae.parameters()))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_batchtopk_keeps_k_times_batch_latents_and_learns_a_threshold():
    sae = _sae("batchtopk")
    out = sae(_x(seed=3))
    assert int((out.values > 0).sum()) == 4 * 64
    assert sae.threshold.item() > 0
    assert (out.l0 - 4).abs() < 1e-6


@pytest.mark.parametrize("arch", list(ARCHS))
def test_folded_sae_reads_raw_activations_identically(arch):
    sae = _sae(arch, **({"init_threshold": 0.2} if arch == "jumprelu" else {}))
    sae(_x(seed=4))  # batchtopk: estimates its threshold
    sae.eval()
    flat = sae.folded()
    assert flat.scale == 1.0
    x = _x(seed=5)
    torch.testing.assert_close(flat.encode(x), sae.encode(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(flat.reconstruct(x), sae.reconstruct(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("training", [True, False])
def test_matryoshka_loss_sums_every_prefix_error_against_a_dense_reference(training):
    """The loss is the full squared error plus that of each inner prefix (6 and 24 of 48 latents),
    latents chosen over the whole dictionary (BatchTopK in training, the threshold at inference)."""
    sae = _sae("matryoshka")
    sae(_x(seed=3))  # learns a threshold, for the eval-mode case
    sae.train(training)
    x = _x(seed=2)
    out = sae(x)
    params = list(sae.parameters())
    grads = torch.autograd.grad(out.loss, params)
    fired = (torch.zeros(len(x), 48).scatter(1, out.indices, out.values) if training else out.latents) > 0
    xn = x * sae.scale
    latents = torch.where(fired, (xn - sae.b_dec) @ sae.W_enc + sae.b_enc, 0.0)  # [N, d_sae], densely
    errors = [((latents[:, :w] @ sae.W_dec[:w] + sae.b_dec) - xn).pow(2).sum(-1).mean() for w in (6, 24, 48)]
    torch.testing.assert_close(out.mse, errors[-1])
    torch.testing.assert_close(out.loss, sum(errors))
    torch.testing.assert_close(out.aux, sum(errors[:2]))  # the inner prefixes' errors (no AuxK: nothing is dead)
    for a, b in zip(grads, torch.autograd.grad(sum(errors), params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_matryoshka_widths_default_to_a_halving_ladder_and_are_checked():
    assert MatryoshkaConfig().prefix_widths(4608) == (288, 576, 1152, 2304, 4608)
    assert MatryoshkaConfig(levels=3).prefix_widths(10) == (2, 5, 10)
    assert MatryoshkaConfig(widths=(8, 16)).prefix_widths(48) == (8, 16, 48)  # d_sae added, as SAELens does
    assert MatryoshkaConfig(widths=(8, 48)).prefix_widths(48) == (8, 48)
    with pytest.raises(GreyglassError, match="strictly increasing"):
        MatryoshkaConfig(widths=(16, 8))
    with pytest.raises(GreyglassError, match="exceed d_sae = 48"):
        SAEConfig(arch=MatryoshkaConfig(k=4, widths=(8, 64)), d_in=16, d_sae=48)


def test_encode_keeps_leading_shape():
    sae = _sae("topk").eval()
    x = _x(n=12).reshape(3, 4, 16)
    z = sae.encode(x)
    assert z.shape == (3, 4, 48) and ((z > 0).sum(-1) <= 4).all()
    assert sae.reconstruct(x).shape == x.shape
    torch.testing.assert_close(sae.decode(z), sae.reconstruct(x), rtol=1e-5, atol=1e-5)


def test_config_errors_name_the_field():
    with pytest.raises(GreyglassError, match="SAEConfig.arch must be one of ReLUConfig"):
        SAEConfig(arch="gated")
    with pytest.raises(GreyglassError, match="k = 100 is larger than d_sae"):
        SAEConfig(d_sae=50, arch=TopKConfig(k=100))
    with pytest.raises(GreyglassError, match="d_in"):
        SAEConfig(d_in=0)
    with pytest.raises(GreyglassError, match="JumpReLUConfig.bandwidth must be > 0"):
        JumpReLUConfig(bandwidth=0)
    with pytest.raises(GreyglassError, match="TopKSAE implements architecture topk, but the config says relu"):
        TopKSAE(SAEConfig(arch=ReLUConfig()))


def test_topk_step_has_only_the_encoder_forward_dense_product():
    """No [N, d_sae] x [d_sae, d_in] product (decode) and no dense encoder backward in a TopK step."""
    from torch.profiler import ProfilerActivity, profile

    sae = _sae("topk")
    x = _x(n=40, seed=6)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        sae(x, dead=torch.ones(48, dtype=torch.bool)).loss.backward()

    def in_sparse_mm(e):
        while e is not None:
            if e.name == "aten::_sparse_mm":
                return True
            e = e.cpu_parent
        return False

    events = prof.events()
    dense = [e.input_shapes for e in events
             if e.name in ("aten::mm", "aten::addmm", "aten::matmul", "aten::bmm") and not in_sparse_mm(e)]
    big = [s for s in dense if any(list(dim) in ([40, 48], [48, 40], [48, 16], [16, 48]) for dim in s if dim)]
    # the only one: the encoder's forward [40, 16] @ [16, 48] (plus bias), shared by TopK and AuxK
    assert big == [[[48], [40, 16], [16, 48], [], []]], big
    # weight gradients are sparse-dense products: W_enc and W_dec, for TopK and for AuxK
    assert sum(e.name == "aten::_sparse_mm" for e in events) == 4


def test_jumprelu_thresholds_start_at_the_target_l0():
    fixed = _sae("jumprelu", target_l0=6.0, init_from_target=False)
    assert fixed.threshold.unique().tolist() == [pytest.approx(0.1)] and fixed(_x()).l0.item() > 20
    sae = _sae("jumprelu", target_l0=6.0)
    assert sae(_x()).l0.item() == pytest.approx(6.0, abs=0.1)  # the batch it started from
    assert sae(_x(seed=3)).l0.item() == pytest.approx(6.0, rel=0.3)  # and a new one


def test_jumprelu_target_l0_and_relu_l1_warmup():
    sae = _sae("jumprelu", target_l0=10.0, l0_coefficient=2.0, init_threshold=0.3)
    out = sae(_x(seed=7))
    assert out.aux.item() == pytest.approx(2.0 * (out.l0.item() / 10.0 - 1) ** 2, rel=1e-5)
    relu = _sae("relu", l1_coefficient=3.0)
    assert relu(_x(seed=8), sparsity_scale=0.0).aux.item() == 0.0
    full = relu(_x(seed=8), sparsity_scale=1.0)
    expected = 3.0 * (full.latents * relu.W_dec.norm(dim=1)).sum(-1).mean()
    assert full.aux.item() == pytest.approx(expected.item(), rel=1e-5)
