"""Sparse autoencoders: architectures, sparse kernels, training, evaluation, SAELens-compatible folders."""

from .config import ARCHITECTURES, SAEConfig, TrainConfig
from .evaluate import EvalConfig, evaluate
from .io import load_sae, load_sparsity, read_training, save_sae
from .model import SAEOutput, SparseAutoencoder, TopKLatents
from .train import TrainResult, buffered_batches, store_batches, train_saes

__all__ = [
    "ARCHITECTURES",
    "EvalConfig",
    "SAEConfig",
    "SAEOutput",
    "SparseAutoencoder",
    "TopKLatents",
    "TrainConfig",
    "TrainResult",
    "buffered_batches",
    "evaluate",
    "load_sae",
    "load_sparsity",
    "read_training",
    "save_sae",
    "store_batches",
    "train_saes",
]
