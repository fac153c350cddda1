"""Linear probes: what a model represents, read layer by layer (sweep, transfer, lying).

The jobs are in `jobs.py`, their typed settings and results in `config.py`, their report
sections in `report.py`; the work in `fit.py`, `sweep.py`, `transfer.py` and `lying.py` (the
residual features they read come from `models.text_features`). Nothing is re-exported here, so importing the package stays cheap.
"""
