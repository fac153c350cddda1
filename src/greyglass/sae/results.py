"""What the SAE jobs measure, as typed records: each job's `results.json` (no torch: the report reads them).

Intervals are `stats.Estimate` (`{"value", "ci_low", "ci_high"}` in JSON). Folders a run made
inside its run folder (SAEs, a meta-SAE, first-letter runs) are named relative to it, so a run
folder can move.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..stats import Estimate

DENSE_RATE = 0.1
"""A latent firing on more than this fraction of tokens counts as dense."""
FREQ_TABLE = "table.md"
"""The frequency-aware experiment's table in markdown, in its run folder."""
FREQ_FIGURES = ("frontier.svg", "absorption.svg")
"""Its figures: explained variance, and first-letter absorption, against L0."""
COMPARE_TABLE = "table.md"
"""`sae compare`'s table in markdown, in its run folder."""
COMPARE_FIGURES = ("frontier.svg", "loss_increase.svg", "absorption_fraction.svg", "full_absorption.svg",
                   "split_features.svg", "sparse_probing.svg")
"""Its figures: explained variance against L0, then one bar chart per metric (95% whiskers where it has an interval)."""


@dataclass(frozen=True)
class TrainedSAE:
    """One SAE of a training run, with its final (smoothed) training figures."""

    folder: str
    """The SAE folder, relative to the run folder."""
    site: str
    architecture: str
    d_sae: int
    k: int | None
    """Active latents per token (TopK, BatchTopK); None for the other architectures."""
    fvu: float
    """Fraction of variance unexplained on the last training batches."""
    l0: float
    dead: float
    """Fraction of latents dead (not fired within the dead window) at the end."""


@dataclass(frozen=True)
class TrainResults:
    saes: tuple[TrainedSAE, ...]
    tokens: int
    """Activations each SAE trained on."""
    seconds: float
    """Time of the last invocation (a resumed run counts only the part it did)."""
    tokens_per_second: float
    """0 when the last invocation found the run finished."""


@dataclass(frozen=True)
class HeldOut:
    """Whether the evaluation text is provably held out from the SAE's training text (`sae.heldout`)."""

    verified: bool
    corpus: str | None = None
    basis: str | None = None
    """Why it is held out (when verified)."""
    reason: str | None = None
    """Why it cannot be shown to be (when not verified)."""


@dataclass(frozen=True)
class DensityHistogram:
    """How many latents fire at each rate: counts per half decade of log10 firing rate."""

    log10_rate_edges: tuple[float, ...]
    counts: tuple[int, ...]
    never_fired: int


@dataclass(frozen=True)
class SAEMetrics:
    """An SAE evaluated on text: the model's loss with it spliced in, reconstruction and sparsity (docs/sae.md)."""

    site: str
    d_sae: int
    n_tokens: int
    """Tokens whose activations were evaluated (each window's first position left out)."""
    n_predictions: int
    """Next-token predictions in the losses (one fewer per window)."""
    heldout: HeldOut
    ce_increase: Estimate
    """CE_sae - CE_clean, nats per token, with a 95% interval from a cluster bootstrap over windows."""
    kl_sae: Estimate
    """KL(clean || with the SAE spliced in) of the next-token distributions, nats per token, 95% interval."""
    perplexity_ratio: float
    ce_clean: float
    ce_sae: float
    ce_zero: float
    """With zeros in place of the site's activations."""
    ce_mean: float
    """With the site's mean activation in their place."""
    kl_zero: float
    kl_mean: float
    ce_loss_recovered_mean: float
    """(CE_mean - CE_sae) / (CE_mean - CE_clean): the share of mean ablation's damage the SAE avoids."""
    ce_loss_recovered: float
    """The same against zero ablation (a much weaker baseline for a mid-depth residual stream)."""
    mse: float
    fvu: float
    explained_variance: float
    cosine: float
    l0: float
    l1: float
    dead_fraction: float
    """Latents that never fired on the evaluated tokens."""
    dense_fraction: float
    """Latents firing on more than DENSE_RATE (10%) of them."""
    shrinkage: float
    """Mean |x_hat| / |x|."""
    density_histogram: DensityHistogram


@dataclass(frozen=True)
class MetricsResults:
    metrics: SAEMetrics
    saelens_reads: SAEMetrics | None
    """The encoder a SAELens user gets from the folder, where it differs (a frequency-aware TopK)."""
    seconds: float


@dataclass(frozen=True)
class LetterAbsorption:
    """One letter of the first-letter benchmark."""

    words: int
    test_words: int
    probe_f1: float
    """Test F1 of the letter's probe on the model's activations."""
    main_latents: tuple[int, ...]
    """The letter's main ("split") latents, by k-sparse probing."""
    split_features: int
    k_sparse_f1: float
    probe_right: int
    """Test words of the letter that its probe gets right: the words scored."""
    full_absorbed: int
    mean_absorption_fraction: float | None
    full_absorption_rate: float | None
    scored: bool
    """Counted in the headline: probe F1 above the bar and words to score."""


@dataclass(frozen=True)
class AbsorbingLatent:
    """A latent that fully absorbs a letter on some of its words."""

    letter: str
    latent: int
    words: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class AbsorptionHeadline:
    """SAEBench's headline: means over the scored letters, with 95% intervals that resample letters (None
    when no letter is scored)."""

    letters_scored: int
    probe_right_words: int
    mean_probe_f1: float
    mean_k_sparse_f1: float
    mean_absorption_fraction: Estimate | None
    full_absorption_rate: Estimate | None
    mean_split_features: Estimate | None


@dataclass(frozen=True)
class AbsorptionResults:
    site: str
    n_words: int
    icl_examples: tuple[str, ...]
    letters: dict[str, LetterAbsorption]
    absorbing_latents: tuple[AbsorbingLatent, ...]
    headline: AbsorptionHeadline

    def absorbing_pairs(self) -> set[tuple[int, int]]:
        """The measured (main latent, absorbing latent) pairs: the weights-only detector's ground truth."""
        return {(m, a.latent) for a in self.absorbing_latents for m in self.letters[a.letter].main_latents}

    def main_latents(self) -> list[int]:
        """Every letter's main latents: the parents the ground truth can speak about."""
        return sorted({m for r in self.letters.values() for m in r.main_latents})


@dataclass(frozen=True)
class AbsorbingPair:
    """A candidate (parent, child) pair from the weights: the child's decoder row holds the parent's
    direction and the parent's encoder ignores it."""

    parent: int
    child: int
    score: float
    decoder_cos: float
    encoder_gap: float


@dataclass(frozen=True)
class DetectorValidation:
    """The weights-only detector against the pairs a first-letter run measured."""

    truth_pairs: int
    detector_pairs: int
    hits: int
    precision: float
    recall: float
    precision_among_measured_parents: float
    auroc: Estimate
    """Of the score over every (measured main latent, latent) pair, measured pairs positive; 95% interval
    from resampling the positives (NaN without any)."""
    auroc_decoder_cos_only: float
    """The baseline the encoder term has to beat: decoder cosine alone."""
    candidate_pairs: int


@dataclass(frozen=True)
class DetectorResults:
    pairs: tuple[AbsorbingPair, ...]
    """Strongest first."""
    used_rates: bool
    validation: DetectorValidation | None
    seconds: float


@dataclass(frozen=True)
class MetaMember:
    latent: int
    value: float
    tokens: tuple[str, ...] | None = None
    """The latent's logit-lens tokens (None without the lens)."""


@dataclass(frozen=True)
class MetaLatent:
    meta_latent: int
    n_members: int
    members: tuple[MetaMember, ...]
    """The strongest members."""
    tokens: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CompositionalLatent:
    latent: int
    meta_latents: tuple[int, ...]
    """Strongest first."""
    row_cos: float
    """Cosine between the latent's decoder row and the meta-SAE's reconstruction of it."""
    tokens: tuple[str, ...] | None = None


@dataclass(frozen=True)
class MetaResults:
    d_sae: int
    meta_latents: int
    k: int
    fraction_variance_explained: float
    mean_meta_latents_per_latent: float
    n_compositional: int
    fraction_compositional: float
    compositional: tuple[CompositionalLatent, ...]
    meta: tuple[MetaLatent, ...]
    """Most members first."""
    meta_sae: str
    """The meta-SAE's folder, relative to the run folder."""


@dataclass(frozen=True)
class FreqRow:
    """One SAE of the frequency-aware sparsity experiment."""

    variant: str
    """topk, topk+freq, jumprelu or jumprelu+freq."""
    target_l0: int
    metrics: SAEMetrics
    absorption: AbsorptionHeadline
    sae: str
    """The SAE folder, relative to the run folder."""
    absorption_run: str
    """Its first-letter run folder (a `sae_absorption` run), relative to the run folder."""
    saelens_reads: SAEMetrics | None = None
    """What a SAELens user gets from the folder, where it differs (a frequency-aware TopK)."""


@dataclass(frozen=True)
class FreqResults:
    rows: tuple[FreqRow, ...]
    train_tokens: int
    train_seconds: float


@dataclass(frozen=True)
class KSparseAccuracy:
    """A probe on k latents: its test accuracy (95% interval resampling the task's clusters) and the latents."""

    k: int
    accuracy: Estimate
    latents: tuple[int, ...]


@dataclass(frozen=True)
class TaskProbing:
    """One binary task: the raw probe and the k-sparse probes on the SAE's latents."""

    task: str
    n_train: int
    n_test: int
    test_clusters: int
    """Independent units in the test split (letters, statement pairs, NTREX lines, questions) the intervals resample."""
    raw: Estimate
    """Test accuracy of a probe on the site's activations (d_model features)."""
    sparse: tuple[KSparseAccuracy, ...]


@dataclass(frozen=True)
class SparseProbingResults:
    site: str
    tasks: tuple[TaskProbing, ...]

    def mean_accuracy(self, k: int | None) -> float:
        """Mean test accuracy over the tasks of the k-sparse probe (k=None: the raw probe), as SAEBench averages."""
        values = [t.raw.value if k is None else next(s.accuracy.value for s in t.sparse if s.k == k)
                  for t in self.tasks]
        return sum(values) / len(values)


@dataclass(frozen=True)
class Calibration:
    """What threshold calibration (`sae compare --calibrate`) did to one SAE."""

    target_l0: float
    shift: float
    """Added to every latent's threshold (then clamped at 0)."""
    l0_before: float
    """Mean L0 on the calibration rows with the learned thresholds."""
    l0_after: float
    rows: int
    """Calibration rows: counted tokens of the held-out split, after those left to evaluation."""
    first_window: int | None = None
    """The held-out split's window the rows begin at (None: calibrated on the train split's first windows,
    as greyglass did before 2026-12-03)."""


@dataclass(frozen=True)
class CalibrateResults:
    """`sae calibrate`: what was done, and the calibrated SAE's folder (relative to the run folder)."""

    calibration: Calibration
    sae: str
    trained_sae: str
    """The folder calibrated, as given."""


@dataclass(frozen=True)
class CompareRow:
    """One SAE of `sae compare`."""

    variant: str
    """Architecture, with +freq for the frequency-aware cost."""
    d_sae: int
    target_l0: int
    metrics: SAEMetrics
    absorption: AbsorptionHeadline
    sparse_probing: SparseProbingResults
    sae: str
    """The SAE folder, relative to the run folder."""
    absorption_run: str
    """Its first-letter run folder (a `sae_absorption` run), relative to the run folder."""
    saelens_reads: SAEMetrics | None = None
    """What a SAELens user gets from the folder, where it differs (a frequency-aware TopK)."""
    calibration: Calibration | None = None
    """With --calibrate: how the thresholds were shifted to the target L0 (None for TopK, never calibrated)."""

    @property
    def label(self) -> str:
        return f"{self.variant} {self.d_sae} L0 {self.target_l0}"


@dataclass(frozen=True)
class CompareResults:
    rows: tuple[CompareRow, ...]
    train_tokens: int
    train_seconds: float
