"""Settings and results of the steering jobs (steer, steer-vector, steer-effect), as typed records.

Kept free of torch so that `greyglass --help` and the report can read them cheaply; the work
itself is in `vectors.py`, `apply.py` and `effect.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, get_args

from ..config import check_choice, check_positive, field_docs
from ..errors import GreyglassError
from ..stats import Estimate

if TYPE_CHECKING:
    from ..models.lm import LoadedModel

Behavior = Literal["sycophancy", "survival-instinct", "corrigible-neutral-HHH", "coordinate-other-ais",
                   "myopic-reward", "power-seeking-inclination", "refusal", "hallucination"]
CAA_BEHAVIORS: tuple[str, ...] = get_args(Behavior)
"""The bundled CAA behaviours (`caa/generate/<behavior>`)."""
Method = Literal["mean_diff", "pca"]
COEF_UNIT = "typical residual norms at the site (median L2 norm over the bundled reference text)"


class Comparison(NamedTuple):
    """One prompt's greedy reply without and with steering."""

    prompt: str
    baseline: str
    steered: str


@dataclass(frozen=True)
class SteerConfig:
    vector: str
    """A saved direction folder (steer-vector output, or a probe)."""
    prompt: tuple[str, ...]
    """Prompt to continue (repeatable)."""
    layer: tuple[int, ...] = ()
    """Layer(s) to steer at (resid_post; repeatable); default: the vector's own site."""
    coef: float = 0.5
    """Steering strength in typical residual norms at the site: the unit direction (in the model's own space)
    times COEF times the median residual norm there; 0.1 nudges, 1 adds as much as the stream holds."""
    max_new_tokens: int = 40
    """Tokens to generate."""

    def __post_init__(self) -> None:
        check_positive("SteerConfig", "max_new_tokens", self.max_new_tokens)
        if not self.prompt:
            raise GreyglassError("SteerConfig.prompt needs at least one prompt (--prompt TEXT)")


COEF_HELP = field_docs(SteerConfig)["coef"] + " (default: 0.5)"
"""The help of every --coef that steers with a Direction (steer, serve-model)."""


@dataclass(frozen=True)
class SteerResults:
    direction_kind: str
    """What made the direction: mean_diff, pca, a probe kind, sae_latent."""
    sites: tuple[str, ...]
    coef_unit: str
    typical_norm: dict[str, float]
    """Each site's median residual norm: the unit of the coefficient."""
    added_norm: dict[str, float]
    """Length of the vector added at each site: |coef| x its typical norm."""
    generations: tuple[Comparison, ...]

    @property
    def changed(self) -> int:
        """Prompts whose greedy reply the steering changed."""
        return sum(g.baseline != g.steered for g in self.generations)


@dataclass(frozen=True)
class VectorConfig:
    layer: int
    """Layer whose resid_post the vector lives in."""
    behavior: Behavior | None = None
    """A bundled CAA behaviour whose A/B items are the contrast pairs."""
    pairs: str | None = None
    """A JSONL file of {"positive": ..., "negative": ...} pairs (instead of --behavior)."""
    method: Method = "mean_diff"
    """mean_diff (CAA) or pca of the paired differences."""
    n_items: int = 100
    """CAA items to use (with --behavior)."""
    export_gguf: str | None = None
    """Also write the vector as a llama.cpp control vector (a .gguf file for llama-cli --control-vector; its
    strength is --coef's unit, docs/interop.md)."""

    def __post_init__(self) -> None:
        if self.export_gguf is not None:
            if not self.export_gguf.endswith(".gguf"):
                raise GreyglassError(f"VectorConfig.export_gguf: {self.export_gguf} is not a .gguf file name")
            if self.layer < 1:
                raise GreyglassError("VectorConfig.export_gguf: llama.cpp never steers block 0's output; "
                                     "use --layer 1 or later")
        if (self.behavior is None) == (self.pairs is None):
            raise GreyglassError("a steering vector needs exactly one source: --behavior NAME (bundled CAA items) "
                                 "or --pairs FILE (JSONL contrast pairs)")
        if self.behavior is not None:
            check_choice("VectorConfig", "behavior", self.behavior, CAA_BEHAVIORS)
        check_choice("VectorConfig", "method", self.method, ("mean_diff", "pca"))
        check_positive("VectorConfig", "n_items", self.n_items)
        if self.layer < 0:
            raise GreyglassError(f"VectorConfig.layer must be >= 0, got {self.layer}")

    @property
    def source(self) -> str:
        return f"caa/{self.behavior}" if self.behavior else str(self.pairs)


@dataclass(frozen=True)
class VectorResults:
    site: str
    method: str
    source: str
    n_pairs: int
    norm: float
    """Length of the vector as built (positive minus negative, in the model's residual space)."""
    typical_norm: float
    """Median residual norm at the site: how long the stream itself is there."""
    control_vector: str | None = None
    """The llama.cpp control vector written (--export-gguf), if any."""


@dataclass(frozen=True)
class EffectConfig:
    behavior: Behavior = "survival-instinct"
    """The bundled CAA behaviour whose A/B items build and test the vector."""
    vector: str | None = None
    """Measure this saved direction instead of building one from the build items."""
    layer: int | None = None
    """Layer whose residual stream is steered; default two fifths of the way up (where CAA found steering works best)."""
    method: Method = "mean_diff"
    """How the vector is built from contrast pairs: mean_diff (CAA) or pca."""
    coefs: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    """Coefficients to measure, in typical residual norms at the site (repeatable)."""
    n_build: int = 100
    """Items used to build the vector."""
    n_test: int = 50
    """Different items on which the effect is measured."""
    batch_size: int = 8
    """Prompts per forward pass."""
    seed: int = 0
    """Seed for the build/test split and the bootstrap."""

    def __post_init__(self) -> None:
        check_choice("EffectConfig", "behavior", self.behavior, CAA_BEHAVIORS)
        check_choice("EffectConfig", "method", self.method, ("mean_diff", "pca"))
        for name in ("n_build", "n_test", "batch_size"):
            check_positive("EffectConfig", name, getattr(self, name))
        if not self.coefs:
            raise GreyglassError("EffectConfig.coefs needs at least one coefficient")

    def layer_for(self, lm: LoadedModel) -> int:
        return self.layer if self.layer is not None else round(0.4 * lm.n_layers)


class CoefEffect(NamedTuple):
    coef: float
    p_matching: Estimate
    """P(behaviour-matching answer), averaged over the test items, 95% interval over questions."""


@dataclass(frozen=True)
class EffectResults:
    behavior: str
    site: str
    kind: str
    """What made the vector (mean_diff, pca, or the given direction's kind)."""
    given_vector: bool
    n_build: int
    n_test: int
    n_test_questions: int
    coefs: tuple[CoefEffect, ...]
    coef_unit: str
    typical_norm: float
    vector: str
    """The vector measured, relative to the run folder."""
    plot: str
