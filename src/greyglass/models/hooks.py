"""Hooks at sites: capture, add a vector, replace a value, stop the forward pass early.

Every helper is a context manager that removes its hooks when the block ends, also when it
ends with an exception. One mechanism serves all of them: `replacing(lm, {site: fn})` calls
`fn(x)` on the site's value `x  # [batch, pos, d_model]` and, if `fn` returns a tensor, the
model continues with that tensor instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager

import torch
from torch import Tensor

from .lm import LoadedModel
from .sites import Site

SiteFn = Callable[[Tensor], Tensor | None]


class StopForward(Exception):
    """Raised inside a hook to end the forward pass once the deepest needed site ran."""


def _register(lm: LoadedModel, site: Site, fn: SiteFn):
    module = lm.site_module(site)
    if site.kind == "resid_pre":

        def pre_hook(_module, args, kwargs):
            if args:
                new = fn(args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            new = fn(kwargs["hidden_states"])
            return None if new is None else (args, {**kwargs, "hidden_states": new})

        return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def hook(_module, _args, output):
        # Blocks return a tensor in transformers 5 and a tuple (hidden, ...) before it.
        x = output[0] if isinstance(output, tuple) else output
        new = fn(x)
        if new is None:
            return None
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return module.register_forward_hook(hook)


@contextmanager
def replacing(lm: LoadedModel, fns: Mapping[str | Site, SiteFn]) -> Iterator[None]:
    """Run `fn` on each site's value; a returned tensor replaces the value."""
    with ExitStack() as stack:
        for site, fn in fns.items():
            stack.callback(_register(lm, lm.site(site), fn).remove)
        yield


@contextmanager
def capturing(
    lm: LoadedModel, sites: Iterable[str | Site], stop: bool = False
) -> Iterator[dict[str, Tensor]]:
    """Collect each site's value by name into the yielded dict.

    With `stop=True` the hook of the last site in forward order raises `StopForward`, so
    no later layer (nor the LM head) runs; `run_to_sites` catches it for you.
    """
    parsed = sorted({lm.site(s) for s in sites})
    last = parsed[-1]
    acts: dict[str, Tensor] = {}

    def keep(site: Site) -> SiteFn:
        def fn(x: Tensor) -> None:
            acts[site.name] = x.detach()
            if stop and site == last:
                raise StopForward

        return fn

    with replacing(lm, {s: keep(s) for s in parsed}):
        yield acts


def run_to_sites(
    lm: LoadedModel,
    input_ids: Tensor,  # [batch, pos]
    sites: Iterable[str | Site],
    attention_mask: Tensor | None = None,  # [batch, pos]
) -> dict[str, Tensor]:
    """Forward `input_ids` only as far as the deepest site; return `{site: [batch, pos, d]}`."""
    with torch.inference_mode(), capturing(lm, sites, stop=True) as acts:
        try:
            lm.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except StopForward:
            pass
    return acts


@contextmanager
def adding(
    lm: LoadedModel,
    site: str | Site,
    vector: Tensor,  # [d_model]
    coef: float = 1.0,
    positions: slice | None = None,
) -> Iterator[None]:
    """Add `coef * vector` to a site's value, at every position or only at `positions`."""
    delta = (coef * vector).to(lm.dtype)

    def fn(x: Tensor) -> Tensor:
        if positions is None:
            return x + delta.to(x.device)
        out = x.clone()
        out[:, positions] += delta.to(x.device)
        return out

    with replacing(lm, {site: fn}):
        yield
