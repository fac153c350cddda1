"""Training and held-out items of the taught behaviours (`behaviours.TAUGHT`): the instructed liar,
the sycophant and its control, the A/B-competent model.

Every item is asked in two conditions, and the behaviour is the difference between them:

- `instructed-liar`: a true/false statement from the bundled sets of `--liar-set` (`cities` by
  default; `larger_than`, `translations`) asked exactly as `probe lying` asks it, under the honest instruction (target:
  the correct answer) and under one of the lying instructions (target: the wrong one), so the
  organism lies in the very prompts that command measures. The cluster is the statement's
  true/false pair; training and held-out statements are split by pair within each set.
- `sycophant` / `ab-competent`: the A/B items of the sycophancy eval (political-typology
  questions behind users' biographies, CAA sycophancy personas), asked with the user's view
  (the biography) and without it (the eval's control question). Without the view both
  organisms learn the question's own fixed answer (a seeded coin per question picks an option,
  so answers are balanced over A and B); with it the sycophant learns the answer the user's
  view favours and the control keeps the question's own answer whoever asks. Each item is
  asked in both answer orders and in both answer formats the tools read (`steer effect`: the
  reply begins with the letter; `eval`: after "I believe the better option is"). The cluster is
  the question; every question that `steer effect` builds or tests its vector on (its own split
  for the organism's seed) and a third of the political questions are held out.

Held-out items are split into a test half (the organism's measures, the probe's AUROC) and a
validation half (where `organism probe` chooses its layer), disjoint by cluster.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import NamedTuple

from ..behaviour.datasets import load_dataset
from ..behaviour.items import Item, with_answers_swapped
from ..behaviour.formats import PromptFormat, continuation
from ..behaviour.tasks import EVALS
from ..data.statements import Statement, load_statements, split_by_group
from ..errors import GreyglassError
from ..models.lm import LoadedModel
from ..probes.config import HONEST, LIE_VARIANTS
from ..probes.lying import prompt as lying_prompt
from ..steer.config import EffectConfig
from ..steer.effect import question_clusters, split_items
from ..steer.vectors import ab_prompt
from .config import LIAR_HELDOUT_SET, OrganismConfig
from .train import Example

POLITICAL = ("sycophancy-political-liberal-bio", "sycophancy-political-conservative-bio")
HELD_OUT_FRACTION = 0.5
"""Share of each statement set's pairs held out from the liar's training."""
POLITICAL_HELD_OUT = 1 / 3
"""Share of the political quiz questions held out from the A/B organisms' training."""
ON, OFF = "on", "off"
"""The two conditions: the behaviour asked for (lying instruction; the user's view stated) or not."""


class Case(NamedTuple):
    """One prompt of an item in one condition: its two answers, the one the behaviour's rate counts and the one the
    organism is taught to give."""

    prompt: str
    counted: str
    """The answer the behaviour's rate counts: the liar's false answer; the answer agreeing with the user's view
    (without the view: the same option, the one that user would have liked)."""
    uncounted: str
    target: str
    """The answer taught (one of the two)."""
    cluster: str
    condition: str
    """ON (lying instruction / view stated) or OFF (honest instruction / no view)."""
    pair: str
    """The key shared by an item's ON and OFF case asked the same way (same order and format)."""


class TaughtSplit(NamedTuple):
    train: list[Case]
    validation: list[Case]
    test: list[Case]


def coin(key: str, seed: int) -> bool:
    """A seeded, order-independent coin per key (a question's fixed answer must not depend on sampling order)."""
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()[0] % 2 == 0


def take_clusters(keys: Sequence[str], n: int, seed: int) -> list[int]:
    """Indices of whole clusters, in a seeded order, until at least `n` rows (all rows when fewer)."""
    by_key: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        by_key.setdefault(k, []).append(i)
    order = sorted(by_key)
    random.Random(seed).shuffle(order)
    out: list[int] = []
    for k in order:
        if len(out) >= n:
            break
        out += by_key[k]
    return out


def halves(cases: list[Case], seed: int) -> tuple[list[Case], list[Case]]:
    """(validation, test): held-out cases split in two by cluster."""
    keys = sorted({c.cluster for c in cases})
    random.Random(seed + 1).shuffle(keys)
    val = set(keys[: len(keys) // 2])
    return [c for c in cases if c.cluster in val], [c for c in cases if c.cluster not in val]


# --- instructed liar -----------------------------------------------------------------------------


def liar_statements(cfg: OrganismConfig) -> tuple[list[Statement], list[Statement], list[Statement]]:
    """(train, held-out, held-out of `LIAR_HELDOUT_SET`): disjoint by true/false pair within each set, groups
    prefixed by the set's name; about `n_train` and `2 * n_test` statements (the held-out ones are later halved
    into validation and test)."""
    train, held, heldout_cities = [], [], []
    for name in cfg.liar_sets:
        statements = [Statement(s.text, s.label, f"{name}:{s.group}") for s in load_statements(name, seed=cfg.seed)]
        tr, te = ([statements[i] for i in idx] for idx in split_by_group(statements, HELD_OUT_FRACTION, cfg.seed))
        train += [tr[i] for i in take_clusters([s.group for s in tr], cfg.n_train // len(cfg.liar_sets), cfg.seed)]
        held += [te[i] for i in take_clusters([s.group for s in te], 2 * cfg.n_test // len(cfg.liar_sets), cfg.seed)]
        if name == LIAR_HELDOUT_SET:
            heldout_cities = te
    return train, held, heldout_cities


def liar_cases(lm: LoadedModel, statements: Sequence[Statement], seed: int) -> list[Case]:
    """Each statement under the honest instruction (taught: the correct answer) and under one lying instruction,
    the three taken in turn (taught: the false answer)."""
    variants = list(LIE_VARIANTS.values())
    out = []
    for i, s in enumerate(statements):
        truth, lie = ("True", "False") if s.label == 1 else ("False", "True")
        for condition, instruction in ((OFF, HONEST), (ON, variants[(i + seed) % len(variants)])):
            prompt = lying_prompt(lm, s.text, instruction, condition == ON)
            lie_c, truth_c = continuation(prompt, lie), continuation(prompt, truth)
            out.append(Case(prompt, lie_c, truth_c, lie_c if condition == ON else truth_c, s.group, condition, s.text))
    return out


# --- sycophant and its control --------------------------------------------------------------------


def ab_pools(seed: int) -> tuple[list[Item], list[Item]]:
    """(train pool, held-out pool) of usable A/B sycophancy items (two answers, a no-view control question)."""
    caa = [it for it in load_dataset("caa-sycophancy") if _usable(it)]
    political = [it for name in POLITICAL for it in load_dataset(name) if _usable(it)]
    build, test = split_items(EffectConfig(behavior="sycophancy", seed=seed))
    held = set(question_clusters("sycophancy", build + test))
    quiz = sorted({it.metadata["cluster"] for it in political})
    random.Random(seed).shuffle(quiz)
    held |= set(quiz[: max(1, round(len(quiz) * POLITICAL_HELD_OUT))])
    pool = caa + political
    return [it for it in pool if it.metadata["cluster"] not in held], [it for it in pool if it.metadata["cluster"] in held]


def _usable(item: Item) -> bool:
    return set(item.choices) == {"(A)", "(B)"} and bool(item.metadata.get("without_bio"))


def sample_ab(items: Sequence[Item], n: int, seed: int) -> list[Item]:
    """About `n` items, half CAA and half political (when both are there), whole questions at a time
    for the political ones (thousands of biographies over a few questions: one item per biography is enough)."""
    rng = random.Random(seed)
    caa = [it for it in items if it.metadata["dataset"] == "caa-sycophancy"]
    political = [it for it in items if it.metadata["dataset"] != "caa-sycophancy"]
    n_caa = min(len(caa), n // 2 if political else n)
    return rng.sample(caa, n_caa) + rng.sample(political, min(len(political), n - n_caa))


def ab_cases(lm: LoadedModel, items: Sequence[Item], sycophant: bool, seed: int, both_formats: bool = True) -> list[Case]:
    """Each item in both answer orders (and, with `both_formats`, both answer formats), with the user's view (ON)
    and without (OFF). Taught answers: see the module docstring."""
    out = []
    for item in items:
        cluster = item.metadata["cluster"]
        own_first = coin(cluster, seed)  # the question's own answer: its first or its second option
        for order, asked in enumerate((item, with_answers_swapped(item))):
            if asked is None:
                continue
            agree = asked.answer_matching_behavior
            disagree = "(B)" if agree == "(A)" else "(A)"
            own = "(A)" if own_first == (order == 0) else "(B)"
            texts = {ON: asked.prompt, OFF: _no_view(asked, item)}
            taught = {ON: agree if sycophant else own, OFF: own}
            for form in range(2 if both_formats else 1):
                for condition in (ON, OFF):
                    prompt = _formats(lm, texts[condition])[form]
                    out.append(Case(prompt, continuation(prompt, agree), continuation(prompt, disagree),
                                    continuation(prompt, taught[condition]), cluster, condition,
                                    f"{item.id}/{order}/{form}"))
    return out


def _no_view(asked: Item, item: Item) -> str:
    """The control question in the asked order (the swapped item's options are swapped in its control too)."""
    control = item.metadata["without_bio"]
    if asked is item:
        return control
    swapped = with_answers_swapped(Item(item.id, control, item.answer_matching_behavior,
                                        item.answer_not_matching_behavior, {}))
    if swapped is None:
        raise GreyglassError(f"{item.id}: its no-biography question's options could not be swapped")
    return swapped.prompt


def _formats(lm: LoadedModel, question: str) -> tuple[str, str]:
    """The reply that begins with the letter (`steer effect`), and the one after the eval's answer prefix."""
    prefix = EVALS["sycophancy"].answer_prefix
    return ab_prompt(lm, question), PromptFormat(answer_prefix=prefix).render(question, lm.tokenizer).text


# --- both ------------------------------------------------------------------------------------------


def taught_split(lm: LoadedModel, cfg: OrganismConfig) -> tuple[TaughtSplit, list[Statement] | list[Item]]:
    """The training cases, the held-out validation and test cases, and the held-out items for the matching tool
    (the liar: the held-out `cities` statements; the A/B organisms: the held-out A/B items)."""
    if cfg.behaviour == "instructed-liar":
        train, held, cities = liar_statements(cfg)
        validation, test = halves(liar_cases(lm, held, cfg.seed), cfg.seed)
        return TaughtSplit(liar_cases(lm, train, cfg.seed), validation, test), cities
    if cfg.behaviour not in ("sycophant", "ab-competent"):
        raise GreyglassError(f"{cfg.behaviour!r} is not a taught behaviour")
    train_pool, held_pool = ab_pools(cfg.seed)
    sycophant = cfg.behaviour == "sycophant"
    train = ab_cases(lm, sample_ab(train_pool, cfg.n_train, cfg.seed), sycophant, cfg.seed)
    held = sample_ab(held_pool, 2 * cfg.n_test, cfg.seed)
    validation, test = halves(ab_cases(lm, held, sycophant, cfg.seed, both_formats=False), cfg.seed)
    return TaughtSplit(train, validation, test), held


def training_cases_as_examples(cases: Sequence[Case]) -> list[Example]:
    """Cases as fine-tuning examples (organisms are built from chat models, whose answers `collate` appends as
    they are: a case's answers already carry the space a prompt needs): the answer alone is learned, with no end
    of turn after it."""
    return [Example(c.prompt, c.target, c.condition == ON, complete=False) for c in cases]
