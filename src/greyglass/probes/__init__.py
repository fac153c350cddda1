"""Linear probes: what a model represents, read layer by layer (sweep, transfer, lying).

The jobs are in `jobs.py`, their typed settings and results in `config.py`; the work in
`features.py` (residual features at many layers), `fit.py`, `sweep.py`, `transfer.py` and
`lying.py`. Nothing is re-exported here, so importing the package stays cheap.
"""
