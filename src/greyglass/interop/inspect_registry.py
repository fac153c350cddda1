"""Registers the `greyglass` model provider with inspect_ai (loaded through the `inspect_ai` entry point).

inspect_ai imports this module when it looks a provider up, so `--model greyglass/<model>`
works once greyglass is installed; the provider itself (and torch) loads only when used.
"""

from inspect_ai.model import modelapi


@modelapi(name="greyglass")
def greyglass():
    from .inspect_model import GreyglassAPI

    return GreyglassAPI
