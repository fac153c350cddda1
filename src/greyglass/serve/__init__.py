"""The local HTTP servers, one Starlette stack: `greyglass serve`, a web app to browse runs, search SAE
features, read latents and probes on typed text, steer generations and drill into eval items; and
`greyglass serve-model`, an OpenAI-compatible API for a local (optionally steered) model."""

from .app import create_app
from .catalog import Catalog, Run
from .listen import serving
from .model_api import ModelServer, create_model_app

__all__ = ["Catalog", "ModelServer", "Run", "create_app", "create_model_app", "serving"]
