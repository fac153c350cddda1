"""The report's HTML page (template `report/page.html`): the shared stylesheet inlined, no
scripts, no fetched fonts; prints cleanly to PDF.

A page is a title, an overview of the sections, the sections, and a glossary. Each jargon
word in a section can be opened inline with `<details>`, which needs no JavaScript.
"""

from __future__ import annotations

from ..clock import readable
from ..templates import render
from .section import Section

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
    return render("report/page.html", title=title, created=readable(), sections=sections, glossary=GLOSSARY)
