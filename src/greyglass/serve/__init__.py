"""The local HTTP servers, one Starlette stack: `greyglass serve`, a web app to browse runs, search SAE
features, read latents and probes on typed text, steer generations and drill into eval items; and
`greyglass serve-model`, an OpenAI-compatible API for a local (optionally steered) model.

The browser is `app.create_app` (pages in `pages.py`, data in `catalog.py` and `live.py`), the model
API `model_api.create_model_app`, serving on a socket `listen.serving`. Nothing is re-exported here:
importing the package would otherwise import the browser, and through it the report and every job,
into `serve-model`.
"""
