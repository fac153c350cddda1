"""Sparse autoencoders: architectures, sparse kernels, training, evaluation, SAELens-compatible folders,
feature absorption and meta-SAEs.

The jobs (`greyglass sae train|eval|absorption|absorption-weights|meta|freq-experiment`) are in
`jobs.py`, their typed settings in `config.py` and results in `results.py`, their report sections
in `report.py`; the work in `train.py`, `metrics.py`, `absorption.py`, `absorption_detector.py`,
`meta.py` and `freq_experiment.py`. SAEs themselves: `model.py` (the base), `architectures.py`
(`create_sae`), `io.py` (`save_sae`, `load_sae`). Nothing is re-exported here, so importing the
package stays cheap.
"""
