"""Site names: where in the layer stack an activation lives.

greyglass uses TransformerLens hook names, the field's lingua franca and what SAELens and
Neuronpedia store: `blocks.{L}.hook_resid_pre`, `blocks.{L}.hook_resid_post`,
`blocks.{L}.hook_attn_out`, `blocks.{L}.hook_mlp_out` (L is 0-based). The short form
`resid_post.10` is accepted everywhere a site is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import total_ordering
from typing import Literal, get_args

from ..errors import GreyglassError

SiteKind = Literal["resid_pre", "resid_post", "attn_out", "mlp_out"]
SITE_KINDS: tuple[str, ...] = get_args(SiteKind)

Position = Literal["last", "mean"]
"""Where a text's feature is read (`text_features`): its last token, or the mean over its tokens."""
POSITIONS: tuple[str, ...] = get_args(Position)

_LONG = re.compile(r"^blocks\.(\d+)\.hook_([a-z_]+)$")
_SHORT = re.compile(r"^([a-z_]+)\.(\d+)$")


_FORWARD = ("resid_pre", "attn_out", "mlp_out", "resid_post")
"""The order in which a block's sites run."""


@total_ordering
@dataclass(frozen=True)
class Site:
    """One hook point: a layer and what is read there. Sites sort in forward order (the one ordering)."""

    layer: int
    kind: SiteKind

    @property
    def name(self) -> str:
        """The TransformerLens name, e.g. `blocks.3.hook_resid_post`."""
        return f"blocks.{self.layer}.hook_{self.kind}"

    @property
    def order(self) -> tuple[int, int]:
        """Position in the forward pass: sites that run earlier sort first."""
        return (self.layer, _FORWARD.index(self.kind))

    def __lt__(self, other: Site) -> bool:
        return self.order < other.order

    def __str__(self) -> str:
        return self.name


def parse_site(text: str | Site, n_layers: int | None = None) -> Site:
    """Parse `blocks.L.hook_KIND` or `KIND.L`; check L against `n_layers` when given."""
    if isinstance(text, Site):
        site = text
    else:
        long, short = _LONG.match(text.strip()), _SHORT.match(text.strip())
        if long:
            layer, kind = int(long.group(1)), long.group(2)
        elif short:
            kind, layer = short.group(1), int(short.group(2))
        else:
            raise GreyglassError(
                f"unknown site {text!r}: write blocks.<layer>.hook_<kind> or <kind>.<layer>, "
                f"with kind one of {', '.join(SITE_KINDS)} (e.g. blocks.10.hook_resid_post)"
            )
        if kind not in SITE_KINDS:
            raise GreyglassError(
                f"unknown site kind {kind!r} in {text!r}; valid kinds: {', '.join(SITE_KINDS)}"
            )
        site = Site(layer, kind)  # type: ignore[arg-type]
    if n_layers is not None and not 0 <= site.layer < n_layers:
        raise GreyglassError(
            f"site {site.name}: layer {site.layer} is out of range; "
            f"this model has layers 0 to {n_layers - 1}"
        )
    return site


def layer_sites(layers: Sequence[int], kind: SiteKind = "resid_post") -> list[str]:
    """The names of one kind of site at each of `layers`."""
    return [Site(layer, kind).name for layer in layers]
