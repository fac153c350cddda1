"""Interoperability: SAELens loads a greyglass SAE folder and computes the same encodings.

Runs only where `sae_lens` is installed; it is not a greyglass dependency
(`pip install sae-lens` into a separate environment to run it).
"""

import pytest
import torch

from greyglass.sae import SAEConfig, SparseAutoencoder

sae_lens = pytest.importorskip("sae_lens")


@pytest.mark.parametrize("arch", ["relu", "topk", "batchtopk", "jumprelu"])
def test_saelens_reads_greyglass_folders(arch, tmp_path):
    ours = SparseAutoencoder(SAEConfig(architecture=arch, d_in=32, d_sae=96, k=6, hook_name="blocks.3.hook_resid_post",
                                       model_name="tiny", jumprelu_init_threshold=0.3))
    x = torch.randn(200, 32) * 7 + 2
    ours.initialise_from(x)
    ours.train()(x)  # batchtopk: learn its threshold
    ours.eval()
    folder = ours.save(tmp_path / arch)
    theirs = sae_lens.SAE.load_from_disk(str(folder), device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), ours.encode(x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(theirs.decode(theirs.encode(x)), ours.reconstruct(x), rtol=1e-4, atol=1e-4)
