"""Per-latent dashboards: one latent's summary for the terminal (`latent_summary`, what `features show`
prints) and self-contained HTML pages (templates `latents/latent.html` and `latents/index.html`).

Each HTML page holds everything inline (the shared stylesheet, SVG); no script, font or image
is fetched, so the folder can be opened offline or mailed. Tokens are shaded by the latent's
activation relative to its maximum; hovering shows the value (a `title` attribute, no JavaScript).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..atomic import atomic_dir
from ..templates import render
from .db import FeatureDB

class ContextToken(NamedTuple):
    """One token of a stored context: its text, activation, shade in [0, 1] and whether the context centres on it."""

    text: str
    act: float
    shade: float
    centre: bool


def histogram_svg(counts: list[int], edges: list[float], width: int = 420, height: int = 120) -> str:
    """An inline SVG bar chart of the nonzero-activation histogram (log-spaced bins); "" when it never fired."""
    used = [i for i, c in enumerate(counts) if c]
    if not used:
        return ""
    lo, hi = used[0], used[-1] + 1
    shown, top = counts[lo:hi], max(counts)
    bar = (width - 40) / len(shown)
    rects = "".join(
        f'<rect x="{30 + i * bar:.1f}" y="{height - 20 - (c / top) * (height - 30):.1f}" width="{max(bar - 1, 1):.1f}" '
        f'height="{(c / top) * (height - 30):.1f}" fill="#2f5fb3"><title>{edges[lo + i]:.3g}-{edges[lo + i + 1]:.3g}: {c}</title></rect>'
        for i, c in enumerate(shown))
    labels = (f'<text x="30" y="{height - 5}" font-size="11">{edges[lo]:.3g}</text>'
              f'<text x="{width - 10}" y="{height - 5}" font-size="11" text-anchor="end">{edges[hi]:.3g}</text>'
              f'<text x="2" y="12" font-size="11">{top}</text>')
    return (f'<svg width="{width}" height="{height}" role="img" '
            f'aria-label="activation histogram">{rects}{labels}</svg>')


def shaded_tokens(texts: Sequence[str], acts: Sequence[float], centre: int, peak: float) -> list[ContextToken]:
    """A context's tokens, each shaded by its activation relative to `peak` (the macro `contexts` draws them)."""
    return [ContextToken(text, act, min(max(act / peak, 0.0), 1.0), i == centre)
            for i, (text, act) in enumerate(zip(texts, acts))]


def _contexts(stored: list[dict[str, Any]], peak: float) -> list[tuple[float, list[ContextToken]]]:
    """Each stored context's activation and its tokens, shaded by activation relative to `peak`."""
    return [(ctx["act"], shaded_tokens([t for t, _ in ctx["tokens"]], [a for _, a in ctx["tokens"]],
                                       ctx["centre_index"], peak))
            for ctx in stored]


def latent_page(row: dict[str, Any], meta: dict[str, Any], in_browser: bool = False) -> str:
    """One latent's dashboard as a complete HTML document; `in_browser` adds the browser's navigation."""
    peak = row["max_act"] or 1.0
    return render("latents/latent.html", title=f"Latent {row['latent']}", row=row, meta=meta,
                  layout="serve/layout.html" if in_browser else "base.html",
                  histogram=histogram_svg(row["hist"], meta["hist_edges"]),
                  lens=list(zip(row["promoted"], row["suppressed"])),
                  top=_contexts(row["top"], peak), samples=_contexts(row["quantile"], peak))


def index_page(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The index of a folder of dashboards: one row per latent, linking to its page."""
    return render("latents/index.html", title="Latents", rows=rows, meta=meta)


def write_html(db: FeatureDB, out: str | Path, latents: list[int] | None = None) -> Path:
    """Write `index.html` and `latent_<i>.html` for the chosen (default: all live) latents, atomically."""
    rows = [r for r in db.latent_rows() if (latents is None and r["density"] > 0) or (latents and r["latent"] in latents)]
    with atomic_dir(out) as tmp:
        (tmp / "index.html").write_text(index_page(rows, db.meta))
        for r in rows:
            (tmp / f"latent_{r['latent']}.html").write_text(latent_page(db.latent(r["latent"]), db.meta))
    return Path(out)


def latent_summary(db: FeatureDB, latent: int, n_contexts: int = 5) -> str:
    """One latent in plain words, what `greyglass features show` prints: the database's row for it, not a run's
    result (the `features` run's report section covers the whole database)."""
    row = db.latent(latent)
    fmt = lambda ctx: "".join(f"[[{t}]]" if i == ctx["centre_index"] else t
                              for i, (t, _) in enumerate(ctx["tokens"])).replace("\n", "⏎")
    lines = [f"latent {latent} at {db.meta.get('site')}  label: {row['label']}",
             f"  density {row['density']:.4%} of {db.meta.get('n_tokens', 0):,} tokens, mean when active "
             f"{row['mean_active']:.3g}, max {row['max_act']:.3g}"]
    if row["explanation"]:
        lines.append(f"  explanation: {row['explanation']}" + (f" (detection {row['detection']:.2f})" if row["detection"] is not None else ""))
    lines.append("  promotes:   " + "  ".join(f"{p[0]!r} {p[1]:+.1f}" for p in row["promoted"][:8]))
    lines.append("  suppresses: " + "  ".join(f"{s[0]!r} {s[1]:+.1f}" for s in row["suppressed"][:8]))
    lines.append("  top contexts ([[token]] is where it fires most):")
    lines += [f"    {c['act']:8.3g}  {fmt(c)}" for c in row["top"][:n_contexts]]
    return "\n".join(lines)

