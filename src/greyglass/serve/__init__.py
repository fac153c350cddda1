"""`greyglass serve`: a local web app to browse runs, search SAE features, read latents and probes
on typed text, steer generations, and drill into eval items."""

from .app import create_app
from .catalog import Catalog, Run

__all__ = ["Catalog", "Run", "create_app"]
