"""Per-latent dashboards: a text summary for the terminal and self-contained HTML pages.

Each HTML page holds everything inline (CSS, SVG); no script, font or image is fetched, so
the folder can be opened offline or mailed. Tokens are shaded by the latent's activation
relative to its maximum; hovering shows the value (a `title` attribute, no JavaScript).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from ..atomic import atomic_dir
from .db import FeatureDB

CSS = """
body { font: 15px/1.5 system-ui, sans-serif; color: #1d2433; max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .2rem; } h2 { font-size: 1.1rem; margin: 1.2rem 0 .4rem; }
.sub { color: #5b6475; margin: 0 0 1rem; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
td, th { border-bottom: 1px solid #d9dee7; padding: .2rem .7rem .2rem 0; text-align: left; vertical-align: top; }
.ctx { font-family: ui-monospace, monospace; font-size: 13px; white-space: pre-wrap; margin: .15rem 0; }
.ctx span { border-radius: 2px; } .ctx .c { outline: 1px solid #b5432f; }
.act { color: #5b6475; font-size: 12px; display: inline-block; width: 4.5rem; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
a { color: #2f5fb3; }
"""


def histogram_svg(counts: list[int], edges: list[float], width: int = 420, height: int = 120) -> str:
    """An inline SVG bar chart of the nonzero-activation histogram (log-spaced bins)."""
    used = [i for i, c in enumerate(counts) if c]
    if not used:
        return "<p>never fired on the tokens read</p>"
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


def _context_html(ctx: dict[str, Any], peak: float) -> str:
    spans = []
    for i, (text, act) in enumerate(ctx["tokens"]):
        alpha = min(max(act / peak, 0.0), 1.0) if peak > 0 else 0.0
        cls = ' class="c"' if i == ctx["centre_index"] else ""
        spans.append(f'<span{cls} style="background:rgba(230,120,40,{alpha:.2f})" title="{act:.3g}">{escape(text)}</span>')
    return f'<div class="ctx"><span class="act">{ctx["act"]:.3g}</span>{"".join(spans)}</div>'


def latent_page(row: dict[str, Any], meta: dict[str, Any]) -> str:
    """One latent's dashboard as a complete HTML document."""
    j = row["latent"]
    peak = row["max_act"] or 1.0
    lens = "".join(f"<tr><td>{escape(p[0])}</td><td>{p[1]:+.2f}</td><td>{escape(s[0])}</td><td>{s[1]:+.2f}</td></tr>"
                   for p, s in zip(row["promoted"], row["suppressed"]))
    expl = (f"<p><b>Explanation:</b> {escape(row['explanation'])}"
            + (f" (detection score {row['detection']:.2f})" if row["detection"] is not None else "") + "</p>"
            if row["explanation"] else "")
    body = f"""<h1>Latent {j}</h1>
<p class="sub">{escape(meta.get('site', ''))} · {escape(str(meta.get('model', '')))} · <a href="index.html">all latents</a></p>
<p><b>Label:</b> {escape(row['label'] or '')}</p>{expl}
<table><tr><th>firing density</th><td>{row['density']:.4%}</td><th>mean when active</th><td>{row['mean_active']:.3g}</td>
<th>max</th><td>{row['max_act']:.3g}</td><th>tokens read</th><td>{meta.get('n_tokens', 0):,}</td></tr></table>
<div class="cols"><div><h2>Activation histogram (nonzero, log bins)</h2>{histogram_svg(row['hist'], meta['hist_edges'])}</div>
<div><h2>Logit lens</h2><table><tr><th>promoted</th><th></th><th>suppressed</th><th></th></tr>{lens}</table></div></div>
<h2>Top activations</h2>{''.join(_context_html(c, peak) for c in row['top']) or '<p>none</p>'}
<h2>Samples across the activation range</h2>{''.join(_context_html(c, peak) for c in row['quantile']) or '<p>none</p>'}"""
    return _document(f"Latent {j}", body)


def index_page(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    items = "".join(f'<tr><td><a href="latent_{r["latent"]}.html">{r["latent"]}</a></td><td>{r["density"]:.4%}</td>'
                    f'<td>{r["max_act"]:.3g}</td><td>{escape(r["label"] or "")}</td></tr>' for r in rows)
    body = (f"<h1>Latents of the SAE at {escape(meta.get('site', ''))}</h1>"
            f"<p class='sub'>{len(rows)} latents · {meta.get('n_tokens', 0):,} tokens read · model "
            f"{escape(str(meta.get('model', '')))}</p><table><tr><th>latent</th><th>density</th><th>max</th>"
            f"<th>label</th></tr>{items}</table>")
    return _document("Latents", body)


def _document(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def write_html(db: FeatureDB, out: str | Path, latents: list[int] | None = None) -> Path:
    """Write `index.html` and `latent_<i>.html` for the chosen (default: all live) latents, atomically."""
    rows = [r for r in db.summaries() if (latents is None and r["density"] > 0) or (latents and r["latent"] in latents)]
    with atomic_dir(out) as tmp:
        (tmp / "index.html").write_text(index_page(rows, db.meta))
        for r in rows:
            (tmp / f"latent_{r['latent']}.html").write_text(latent_page(db.latent(r["latent"]), db.meta))
    return Path(out)


def text_summary(db: FeatureDB, latent: int, n_contexts: int = 5) -> str:
    """What `greyglass features show` prints."""
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

