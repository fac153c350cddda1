"""Steering: vectors from contrast pairs, probes or SAE latents; applying them; measuring their effect.

The jobs are in `jobs.py`, their typed settings and results in `config.py`; the work in
`vectors.py` (building vectors), `apply.py` (the one definition of steering), `effect.py`
(the effect on held-out CAA items) and `control_vector.py` (a vector as a llama.cpp control
vector). Nothing is re-exported here, so importing the package stays cheap.
"""
