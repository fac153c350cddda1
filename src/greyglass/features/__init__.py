"""Feature interpretation: per-latent statistics, search, dashboards, concepts across languages, steering."""

from .build import FeaturesConfig, build_features
from .db import FeatureDB
from .stats import FeatureStats, StatsAccumulator

__all__ = ["FeatureDB", "FeatureStats", "FeaturesConfig", "StatsAccumulator", "build_features"]
