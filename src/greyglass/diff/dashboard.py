"""Per-latent dashboards of a `diff report`: one self-contained HTML page per described crosscoder latent
(templates `diff/latent.html`, `diff/index.html`), written to the run folder's `latents/` and served by the
browser at `/crosscoder/<run>/latent_<k>.html`.

A page shows what the report measured for the latent: its class and relative decoder norm, the cosine of its
two decoder rows, its firing rate, the Latent Scaling betas and ratios, the logit lens of its decoder row, and its
top contexts as model B and as model A drive it, each token shaded by the latent's value there (hover for it).
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_dir
from ..latents.dashboard import ContextToken, shaded_tokens
from ..report.section import fmt
from ..templates import render
from .config import ARTEFACT_RATIO, Context, LatentReport, LatentsResults

FOLDER = "latents"
_KIND = {"b_only": "B-only", "a_only": "A-only", "shared": "shared", "other": "in between"}


def described(res: LatentsResults) -> list[LatentReport]:
    """The latents the report describes, B side first, each once."""
    seen: dict[int, LatentReport] = {}
    for r in (*res.b_latents, *res.a_latents):
        seen.setdefault(r.latent, r)
    return list(seen.values())


def verdict(r: LatentReport) -> str:
    """Latent Scaling in words."""
    if r.scaling is None:
        return "not fitted"
    if r.genuine is None:
        return f"nu_epsilon {fmt(r.scaling.error_ratio, 2)}, nu_r {fmt(r.scaling.reconstruction_ratio, 2)}"
    return ("genuine: model A neither leaves its direction in its error nor rebuilds it (both ratios' upper bounds "
            f"below {ARTEFACT_RATIO})" if r.genuine else
            f"possibly an artefact of the sparsity loss (a ratio's interval reaches {ARTEFACT_RATIO})")


def _contexts(items: tuple[Context, ...]) -> list[tuple[float, list[ContextToken]]]:
    """Each context's value and its tokens shaded by the latent's value there; without stored values only the
    peak is shaded."""
    shown = []
    for c in items:
        values = c.activations or tuple(c.value if i == c.peak else 0.0 for i in range(len(c.tokens)))
        shown.append((c.value, shaded_tokens(c.tokens, values, c.peak, max(max(values, default=0.0), 1e-12))))
    return shown


def latent_page(res: LatentsResults, r: LatentReport, in_browser: bool = False) -> str:
    """One latent's dashboard as a complete HTML document; `in_browser` adds the browser's navigation."""
    s = r.scaling
    scaling = [] if s is None else [
        ("error with the latent put back (nu_epsilon)", s.beta_error_a, s.beta_error_b, fmt(s.error_ratio)),
        ("reconstruction without the latent (nu_r)", s.beta_reconstruction_a, s.beta_reconstruction_b,
         fmt(s.reconstruction_ratio))]
    return render("diff/latent.html", title=f"Crosscoder latent {r.latent}", r=r, res=res, kind=_KIND[r.kind],
                  layout="serve/layout.html" if in_browser else "base.html", scaling=scaling, verdict=verdict(r),
                  lens=list(zip(r.promoted, r.suppressed)), lens_model="B" if r.relative_norm >= 0.5 else "A",
                  contexts_a=_contexts(r.contexts_a), contexts_b=_contexts(r.contexts_b), index="index.html")


def index_page(res: LatentsResults, in_browser: bool = False, prefix: str = "") -> str:
    """The described latents, one row each, linking to their pages (`prefix` before `latent_<k>.html`)."""
    return render("diff/index.html", title="Crosscoder latents", res=res, prefix=prefix,
                  layout="serve/layout.html" if in_browser else "base.html",
                  rows=[(r, verdict(r)) for r in described(res)])


def write_dashboards(res: LatentsResults, out: Path) -> Path:
    """Write `out/latents/index.html` and `latent_<k>.html` for every described latent, atomically."""
    with atomic_dir(out / FOLDER) as tmp:
        (tmp / "index.html").write_text(index_page(res))
        for r in described(res):
            (tmp / f"latent_{r.latent}.html").write_text(latent_page(res, r))
    return out / FOLDER
