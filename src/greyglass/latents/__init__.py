"""Feature interpretation: what each SAE latent means (statistics, search, dashboards, concepts, steering).

The jobs and tools are in `jobs.py`, their typed settings and results in `config.py`; the work
in `build.py` (one streaming pass -> `features.sqlite`), `concept.py`, `intervene.py` and
`tools.py` (show, html, search). Nothing is re-exported here, so importing the package stays
cheap.
"""
