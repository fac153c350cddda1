"""Behavioural alignment evals: items, prompt formats, scoring backends, the evals and their run folders.

An eval is data (`datasets`) + a way to ask (`formats`) + a way to score (`scorers`), put
together by name in `tasks.EVALS` and run into a run folder by `run.run_eval`.
"""

from .datasets import DATASETS, load_dataset
from .formats import PromptFormat
from .items import Item, load_items
from .local import LocalBackend, Request, Scored, score_naive
from .remote import HttpBackend, HttpConfig
from .run import EvalConfig, run_eval
from .scorers import SCORERS
from .tasks import EVALS, explain

__all__ = [
    "DATASETS", "EVALS", "SCORERS", "EvalConfig", "HttpBackend", "HttpConfig", "Item", "LocalBackend",
    "PromptFormat", "Request", "Scored", "explain", "load_dataset", "load_items", "run_eval", "score_naive",
]
