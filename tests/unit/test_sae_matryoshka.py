"""Matryoshka SAEs keep a parent feature when its children fire, where BatchTopK absorbs it.

A planted hierarchy (Chanin et al.'s feature absorption; Bussmann et al. 2025, section 3): a
parent direction fires on 40% of tokens, and on 95% of those exactly one of four child
directions fires with it; six unrelated directions fire independently. Children never fire
without the parent. At k = 1, below the true L0 (about 1.4), a BatchTopK SAE saves a latent by
folding the parent into each child's latent, so the latent that reads the parent goes silent on
tokens with a child. A Matryoshka SAE whose first latent must reconstruct on its own learns the
parent there and keeps it firing with every child. Both train on the same batches (one pass).
"""

import pytest
import torch

from greyglass.sae.config import BatchTopKConfig, MatryoshkaConfig, SAEConfig, TrainConfig
from greyglass.sae.train import train_saes

D_IN, CHILDREN, OTHERS = 16, 4, 6
N_FEATURES = 1 + CHILDREN + OTHERS  # the parent is feature 0
DIRECTIONS = torch.linalg.qr(torch.randn(D_IN, D_IN, generator=torch.Generator().manual_seed(0)))[0][:N_FEATURES]


def _hierarchy(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations `[n, D_IN]` and which features fired `[n, N_FEATURES]`."""
    fired = torch.zeros(n, N_FEATURES)
    parent = torch.rand(n, generator=gen) < 0.4
    with_child = parent & (torch.rand(n, generator=gen) < 0.95)
    child = 1 + torch.randint(0, CHILDREN, (n,), generator=gen)
    fired[:, 0] = parent.float()
    fired[with_child.nonzero()[:, 0], child[with_child]] = 1
    fired[:, 1 + CHILDREN:] = (torch.rand(n, OTHERS, generator=gen) < 0.1).float()
    magnitude = 0.5 + torch.rand(n, N_FEATURES, generator=gen)
    magnitude[:, 0] *= 1.5  # the parent is the largest single direction
    return (fired * magnitude) @ DIRECTIONS, fired


def _batches(batch_size: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield {"": _hierarchy(batch_size, gen)[0]}


def _parent_latent_on_children(sae, x: torch.Tensor, fired: torch.Tensor) -> tuple[float, float]:
    """The latent whose decoder row is closest to the parent: (its cosine, how often it fires on tokens with a child)."""
    with torch.no_grad():
        rows = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
        cos = rows @ DIRECTIONS[0]  # [d_sae]
        latent = int(cos.argmax())
        on_children = fired[:, 1:1 + CHILDREN].sum(1) > 0
        return float(cos[latent]), float((sae.encode(x)[on_children, latent] > 0).float().mean())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    topk = {"k": 1, "k_aux": 4}
    cfgs = [SAEConfig(arch=BatchTopKConfig(**topk), d_in=D_IN, d_sae=16),
            SAEConfig(arch=MatryoshkaConfig(**topk, widths=(1,)), d_in=D_IN, d_sae=16)]
    tcfg = TrainConfig(tokens=150_000, batch_size=512, lr=1e-2, warmup_steps=10)
    return train_saes(cfgs, tcfg, _batches(512, seed=1), tmp_path_factory.mktemp("hierarchy"), progress=False).saes


def test_matryoshka_keeps_the_parent_latent_firing_with_its_children_where_batchtopk_absorbs_it(trained):
    x, fired = _hierarchy(4000, torch.Generator().manual_seed(99))
    (btk_cos, btk_fires), (mat_cos, mat_fires) = (_parent_latent_on_children(s, x, fired) for s in trained)
    assert mat_cos > 0.9 and btk_cos > 0.8  # both learned a parent latent...
    assert mat_fires > 0.95  # ...the Matryoshka one fires whenever a child does
    assert btk_fires < 0.6  # ...the BatchTopK one mostly does not: its children's latents absorbed it


def test_the_parent_is_the_matryoshka_first_latent(trained):
    """The one-latent prefix had to reconstruct alone: the largest, most frequent direction goes there."""
    rows = trained[1].W_dec.detach()
    assert float(rows[0] @ DIRECTIONS[0] / rows[0].norm()) > 0.9
