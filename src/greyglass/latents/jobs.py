"""The feature jobs (`greyglass features build|concept`, `greyglass steer-feature`) and tools
(`greyglass features show|html|search`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..job import DefaultOut, Job, RunOptions, Tool
from . import tools
from .config import (BuildConfig, BuildResults, ConceptConfig, ConceptResults, SteerFeatureConfig,
                     SteerFeatureResults)
from .report import concept_section, features_section, steer_feature_section

if TYPE_CHECKING:
    from ..models.lm import LoadedModel


def _build(lm: LoadedModel, cfg: BuildConfig, out: Path, opts: RunOptions) -> BuildResults:
    from .build import run_build

    return run_build(lm, cfg, out, opts.progress)


def _concept(lm: LoadedModel, cfg: ConceptConfig, out: Path, opts: RunOptions) -> ConceptResults:
    from .concept import run_concept

    return run_concept(lm, cfg, out)


def _steer_feature(lm: LoadedModel, cfg: SteerFeatureConfig, out: Path, opts: RunOptions) -> SteerFeatureResults:
    from .intervene import run_steer_feature

    return run_steer_feature(lm, cfg, out)


FEATURES_BUILD = Job(
    name="features", command=("features", "build"), config=BuildConfig, results=BuildResults, run=_build,
    section=features_section,
    help="one pass over text: per-latent statistics, logit lens, labels -> features.sqlite",
    description="Run text through the model and the SAE once and store, for every latent, its density, histogram, "
    "top and quantile contexts, logit lens and a label, searchable.",
    # beside the SAE, where `features show|html|search SAE` and `features concept SAE` look for it
    default_out=DefaultOut("<SAE>/features", lambda cfg: Path(cfg.sae) / "features"))
FEATURES_CONCEPT = Job(
    name="features_concept", command=("features", "concept"), config=ConceptConfig, results=ConceptResults,
    run=_concept, section=concept_section,
    help="latents that fire on a concept across languages and not on controls",
    description="Run a concept's sentences in many languages (built in: bridge, disease, money, deception, code_bug; "
    "or a JSON file) and control sentences through the model and SAE; rank latents by how many languages they "
    "carry the concept in, on the even-numbered sentences, and score them (AUROC, 95% interval) on the "
    "odd-numbered ones.")
STEER_FEATURE = Job(
    name="steer_feature", command=("steer-feature",), config=SteerFeatureConfig, results=SteerFeatureResults,
    run=_steer_feature, section=steer_feature_section,
    help="clamp or add an SAE latent during generation; measure the effect",
    description="Generate with and without a latent clamped (or its decoder row added) at its site, side by side, "
    "and measure the probability of the concept's tokens across values.")

JOBS = (FEATURES_BUILD, FEATURES_CONCEPT, STEER_FEATURE)
TOOLS = (
    Tool(("features", "show"), "print one latent's summary", tools.add_show_arguments, tools.show),
    Tool(("features", "html"), "write self-contained HTML dashboards (one page per latent + index)",
         tools.add_html_arguments, tools.html),
    Tool(("features", "search"), "find latents: by a token they fire on, by words in their label, or by a text",
         tools.add_search_arguments, tools.search),
)
GROUPS = {"features": "what each SAE latent means: statistics, search, dashboards, concepts"}
