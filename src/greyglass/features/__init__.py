"""Feature interpretation: per-latent statistics, search, dashboards, concepts across languages, steering."""

from .build import FeaturesConfig, build_features
from .db import FeatureDB
from .load import SAELike, load_sae
from .stats import FeatureStats, StatsAccumulator

__all__ = ["FeatureDB", "FeatureStats", "FeaturesConfig", "SAELike", "StatsAccumulator", "build_features", "load_sae"]
