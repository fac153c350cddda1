"""The activation store: capture activations at model sites to sharded safetensors and read them back.

The `capture` job and the `info` tool are in `jobs.py`, the typed settings and results in
`config.py`; the capture in `writer.py`, reading in `reader.py` (`ActivationStore`), the
manifest format in `manifest.py`. Nothing is re-exported here, so importing the package stays cheap.
"""
