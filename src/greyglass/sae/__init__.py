"""Sparse autoencoders: architectures, sparse kernels, training, evaluation, SAELens-compatible folders."""

from .architectures import BatchTopKSAE, JumpReLUSAE, ReLUSAE, TopKSAE, create_sae
from .config import (ARCHITECTURES, BatchTopKConfig, FreqCostConfig, JumpReLUConfig, ReLUConfig, SAEConfig, TopKConfig,
                     TrainConfig)
from .evaluate import EvalConfig, evaluate
from .io import load_sae, load_sparsity, read_training, save_sae
from .model import SAEOutput, SparseAutoencoder, TopKLatents
from .train import TrainResult, buffered_batches, store_batches, train_saes

__all__ = [
    "ARCHITECTURES",
    "BatchTopKConfig",
    "BatchTopKSAE",
    "EvalConfig",
    "FreqCostConfig",
    "JumpReLUConfig",
    "JumpReLUSAE",
    "ReLUConfig",
    "ReLUSAE",
    "SAEConfig",
    "SAEOutput",
    "SparseAutoencoder",
    "TopKConfig",
    "TopKLatents",
    "TopKSAE",
    "TrainConfig",
    "TrainResult",
    "buffered_batches",
    "create_sae",
    "evaluate",
    "load_sae",
    "load_sparsity",
    "read_training",
    "save_sae",
    "store_batches",
    "train_saes",
]
