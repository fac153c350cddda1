"""The activation store: capture activations to sharded safetensors and read them back."""

from .writer import CaptureConfig, capture
from .manifest import MANIFEST, read_manifest
from .reader import ActivationStore

__all__ = ["MANIFEST", "ActivationStore", "CaptureConfig", "capture", "read_manifest"]
