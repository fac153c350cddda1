"""The report's HTML page: inline CSS, no scripts, no fetched fonts; prints cleanly to PDF.

A page is a title, an overview of the sections, the sections, and a glossary. Each jargon
word in a section can be opened inline with `<details>`, which needs no JavaScript.
"""

from __future__ import annotations

import datetime as dt
from html import escape

from .section import Section

CSS = """
:root { --ink:#1d2433; --muted:#5b6475; --line:#d9dee7; --accent:#2f5fb3; --good:#1e7d4f; --warn:#a15c00; }
* { box-sizing: border-box; }
body { font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       max-width: 60rem; margin: 2rem auto; padding: 0 1.25rem; }
h1 { font-size: 1.9rem; margin-bottom: .2rem; } h2 { font-size: 1.35rem; margin: 0 0 .4rem; }
.sub { color: var(--muted); margin-top: 0; }
section { border-top: 3px solid var(--line); padding: 1.4rem 0 1.2rem; page-break-inside: avoid; }
.headline { font-size: 1.15rem; font-weight: 600; margin: .3rem 0 1rem; }
.kind { text-transform: uppercase; letter-spacing: .06em; font-size: .75rem; color: var(--muted); }
figure { margin: 0 0 1rem; } figure svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-variant-numeric: tabular-nums; }
td, th { border-bottom: 1px solid var(--line); padding: .3rem .8rem .3rem 0; text-align: left; vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: .85rem; }
.boxes { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; margin: .6rem 0; }
.box { border: 1px solid var(--line); border-radius: 6px; padding: .6rem .9rem; }
.box h3 { margin: 0 0 .3rem; font-size: .95rem; } .box ul { margin: 0; padding-left: 1.1rem; }
.shows h3 { color: var(--good); } .limits h3 { color: var(--warn); }
.prov { font-size: .8rem; color: var(--muted); } .prov code { font-size: .78rem; word-break: break-all; }
details { margin: .2rem 0; } summary { cursor: pointer; color: var(--accent); }
.toc li { margin: .15rem 0; }
@media print { body { margin: 0; max-width: none; } summary { color: var(--ink); }
               details { display: block; } section { break-inside: avoid; } }
@media (max-width: 40rem) { .boxes { grid-template-columns: 1fr; } }
"""

GLOSSARY: dict[str, str] = {
    "activation": "The list of numbers a model computes for each word-piece at one layer. Everything greyglass reads inside a model is an activation.",
    "layer": "Language models process text in a stack of identical blocks. Layer 0 is the first; later layers build more abstract representations.",
    "residual stream": "The running sum of all blocks' outputs that carries information from layer to layer; the usual place to read a model's internal state.",
    "token": "The unit of text a model reads: a word or piece of a word.",
    "feature": "A direction in activation space that corresponds to something recognisable (a topic, a word, an idea). Sparse autoencoders find features without labels.",
    "sparse autoencoder (SAE)": "A small network trained to rewrite a layer's activations as a sum of a few features out of thousands, so each can be inspected.",
    "explained variance": "How much of the activations an SAE reproduces: 100% is perfect, 0% is no better than always guessing the average.",
    "L0": "How many features are active for a typical token. Lower means each token is explained by fewer, easier-to-read features.",
    "probe": "A simple linear classifier trained on a layer's activations to read out one property, such as whether a statement is true.",
    "AUROC": "The chance that a randomly chosen positive example scores higher than a randomly chosen negative one. 0.5 is guessing, 1.0 is perfect separation.",
    "confidence interval": "The range the true value plausibly lies in (95% bootstrap interval). If it includes the chance level, the result could be luck.",
    "steering": "Adding a direction to a model's activations while it runs, to push its behaviour one way; a test of whether the direction causes behaviour.",
    "sycophancy": "Telling users what they want to hear: a model changing its answer to match the opinion a user has stated.",
    "CE loss recovered": "How much of the model's next-word prediction quality survives when its activations are replaced by the SAE's reconstruction (100% is all of it).",
}


def render_page(sections: list[Section], title: str = "What we found inside the model") -> str:
    created = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    toc = "".join(f'<li><a href="#s{i}">{escape(s.title)}</a>: {escape(s.headline)}</li>' for i, s in enumerate(sections))
    body = "\n".join(s.render(f"s{i}") for i, s in enumerate(sections))
    glossary = "".join(f"<details><summary>{escape(k)}</summary><p>{escape(v)}</p></details>" for k, v in GLOSSARY.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="sub">A greyglass evidence report, generated {created}. Every number below comes from a run folder
listed in its section; every headline states only what those numbers support.</p>
<h2>Summary</h2><ul class="toc">{toc}</ul>
{body}
<section><h2>Glossary</h2>{glossary}</section>
</body></html>
"""
