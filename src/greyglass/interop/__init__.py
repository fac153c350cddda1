"""Interoperability with the tools people already use: inspect_ai logs and models (docs/interop.md).

`inspect_log.py` writes greyglass eval runs as inspect_ai eval logs (`greyglass export inspect`);
`inspect_model.py` is the inspect_ai model provider `greyglass/<model>` (optionally steered and
probe-monitored), registered by `inspect_registry.py` through the `inspect_ai` entry point.
llama.cpp control vectors are written by `steer/control_vector.py` (`steer-vector --export-gguf`).
"""
