"""Behavioural alignment evals: items, prompt formats, scoring backends, the evals and their run folders.

An eval is data (`datasets`) + a way to ask (`formats`) + a way to score (`scorers`), put
together by name in `tasks.EVALS` and run into a run folder by `run.run_eval`; `cot.py` and
`pressure.py` are the generating evals. The jobs (`eval`, `eval-cot`, `eval-pressure`) and the
`serve-model` tool are in `jobs.py`, their typed settings in `config.py` and results in
`results.py`. Nothing is re-exported here, so importing the package stays cheap.
"""
