"""greyglass: make a language model a grey box, with evidence a non-expert can check."""

from .errors import GreyglassError
from .version import __version__

__all__ = ["GreyglassError", "__version__"]
