"""Linear probes: features at many layers, probe kinds, layer sweeps, transfer, lying localisation."""

from .features import layer_sites, text_features
from .fit import PROBE_KINDS, fit_probe, paired_differences
from .sweep import SweepConfig, held_out_metrics, sweep
from .transfer import TransferConfig, transfer

__all__ = [
    "PROBE_KINDS",
    "SweepConfig",
    "TransferConfig",
    "fit_probe",
    "held_out_metrics",
    "layer_sites",
    "paired_differences",
    "sweep",
    "text_features",
    "transfer",
]
