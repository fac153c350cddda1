"""Models: load one, name its sites, and hook them."""

from .hooks import StopForward, adding, capturing, replacing, run_to_sites
from .lm import LoadedModel
from .loader import DEFAULT_MODEL, EMBEDDED, load_model
from .sites import SITE_KINDS, Site, parse_site
from .tiny import tiny_model

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED",
    "SITE_KINDS",
    "LoadedModel",
    "Site",
    "StopForward",
    "adding",
    "capturing",
    "load_model",
    "parse_site",
    "replacing",
    "run_to_sites",
    "tiny_model",
]
