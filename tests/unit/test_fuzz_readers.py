"""Every reader of a user- or run-written file, fuzzed (issue 22; docs/reliability.md).

Each test generates a valid file (or folder), checks that it loads back exactly, then breaks it
(tests/fuzzing.py: bytes, JSON fields, tensors) and checks that the only outcomes are a load
that passes the reader's own invariants or a `GreyglassError` naming the file; never another
exception, and never a changed or added file. `make fuzz` runs many more examples.
"""

from __future__ import annotations

import gzip
import itertools
import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
import torch
from fuzzing import HOSTILE_STRINGS, LINE_CAP, mutated_bytes, mutated_json, mutated_tensors, read_cleanly
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from greyglass.data import files
from greyglass.errors import GreyglassError
from greyglass.data.corpus import CorpusConfig, documents
from greyglass.data.statements import read_statements
from greyglass.behaviour.items import load_items

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
NO_MUTATION = st.just(None)


@contextmanager
def scratch(pristine: Path | None = None):
    """A fresh folder (a copy of `pristine`) per example, with the text readers' line cap lowered."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(files, "MAX_TEXT_CHARS", LINE_CAP):
        folder = Path(tmp) / "in"
        if pristine is None:
            folder.mkdir()
        else:
            shutil.copytree(pristine, folder)
        yield folder


def write_maybe_gz(path: Path, data: bytes) -> Path:
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


@st.composite
def jsonl_case(draw, rows: list[dict]) -> tuple[bytes, tuple | None]:
    """JSONL bytes of `rows`, unchanged, with one row's JSON mutated, or with the bytes mutated."""
    lines = [json.dumps(r) for r in rows]
    how = draw(st.sampled_from(["valid", "row", "bytes"]))
    if how == "row":
        i = draw(st.integers(0, len(lines) - 1))
        lines[i], at = draw(mutated_json(rows[i]))
        return ("\n".join(lines) + "\n").encode(), at
    data = ("\n".join(lines) + "\n").encode()
    return (draw(mutated_bytes(data)), ()) if how == "bytes" else (data, None)


# --- corpora -------------------------------------------------------------------------------------


@given(docs=st.lists(TEXT, min_size=1, max_size=6), suffix=st.sampled_from([".jsonl", ".jsonl.gz"]), data=st.data())
def test_corpus_jsonl(docs, suffix, data):
    rows = [{"text": d, "id": i} for i, d in enumerate(docs)]
    raw, changed = data.draw(jsonl_case(rows))
    with scratch() as folder:
        path = write_maybe_gz(folder / f"c{suffix}", raw)
        got = read_cleanly(lambda: sorted(documents(CorpusConfig(corpus=str(path)))), folder, (path.name,), changed)
    if changed is None:
        assert [t for _, t in got] == docs
    elif got is not None:
        assert all(isinstance(t, str) for _, t in got)


@given(doc=TEXT, suffix=st.sampled_from([".txt", ".txt.gz"]), mutate=st.booleans(), data=st.data())
def test_corpus_txt(doc, suffix, mutate, data):
    raw = doc.encode()
    if mutate:
        raw = data.draw(mutated_bytes(raw))
    with scratch() as folder:
        path = write_maybe_gz(folder / f"c{suffix}", raw)
        got = read_cleanly(lambda: list(documents(CorpusConfig(corpus=str(path)))), folder, (path.name,))
    if not mutate:  # text mode reads \r\n and \r as \n
        assert got == [(0, doc.replace("\r\n", "\n").replace("\r", "\n"))]


def test_corpus_line_cap_refuses_a_long_line_before_reading_it(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": "x" * (LINE_CAP + 1)}) + "\n")
    with mock.patch.object(files, "MAX_TEXT_CHARS", LINE_CAP), pytest.raises(files.GreyglassError,
                                                                               match=r"c\.jsonl: line 1 is longer"):
        list(documents(CorpusConfig(corpus=str(path))))


# --- statements ----------------------------------------------------------------------------------

STATEMENT_ROWS = st.lists(st.tuples(TEXT.filter(str.strip), st.integers(0, 1), st.text("ab", max_size=2)),
                          min_size=1, max_size=5)


@given(rows=STATEMENT_ROWS, data=st.data())
def test_statements_jsonl(rows, data):
    dicts = [{"statement": t, "label": y, "group": g} for t, y, g in rows]
    raw, changed = data.draw(jsonl_case(dicts))
    with scratch() as folder:
        path = write_maybe_gz(folder / "s.jsonl", raw)
        got = read_cleanly(lambda: read_statements(path), folder, (path.name,), changed)
    if changed is None:
        assert [(s.text, s.label, s.group) for s in got] == [(t.strip(), y, g) for t, y, g in rows]
    elif got is not None:
        assert all(s.label in (0, 1) and s.text for s in got)


@given(rows=STATEMENT_ROWS, how=st.sampled_from(["valid", "column", "bytes"]), data=st.data())
def test_statements_csv(rows, how, data):
    import csv
    import io

    table = [["statement", "label", "group"], *map(list, rows)]
    changed = None
    if how == "column":  # a column dropped, or one row's cell replaced by any text
        col, changed = data.draw(st.sampled_from([(i, (name,)) for i, name in enumerate(table[0])]))
        if data.draw(st.booleans()):
            table = [r[:col] + r[col + 1:] for r in table]
        else:
            table[data.draw(st.integers(1, len(rows)))][col] = data.draw(st.sampled_from(HOSTILE_STRINGS) | TEXT)
    buf = io.StringIO()
    csv.writer(buf).writerows(table)
    raw = buf.getvalue().encode()
    if how == "bytes":
        raw = data.draw(mutated_bytes(raw))
    with scratch() as folder:
        path = write_maybe_gz(folder / "s.csv", raw)
        got = read_cleanly(lambda: read_statements(path), folder, (path.name,), changed)
    if how == "valid":
        assert [(s.text, s.label, s.group) for s in got] == [(t.strip(), y, g) for t, y, g in rows]
    elif got is not None:
        assert all(s.label in (0, 1) and s.text for s in got)


# --- eval items ----------------------------------------------------------------------------------

ITEM_ROWS = st.lists(st.tuples(TEXT.filter(str.strip), st.sampled_from(["(A)", "(B)"])), min_size=1, max_size=4)


def _item_rows(rows):
    return [{"question": q, "answer_matching_behavior": f" {m}", "answer_not_matching_behavior": " (B)" if m == "(A)" else " (A)"}
            for q, m in rows]


@given(rows=ITEM_ROWS, data=st.data())
def test_items_jsonl(rows, data):
    raw, changed = data.draw(jsonl_case(_item_rows(rows)))
    with scratch() as folder:
        path = write_maybe_gz(folder / "items.jsonl", raw)
        got = read_cleanly(lambda: load_items(path), folder, (path.name,), changed)
    if changed is None:
        assert [(i.prompt, i.answer_matching_behavior) for i in got] == rows


@given(rows=ITEM_ROWS, how=st.sampled_from(["valid", "json", "bytes"]), data=st.data())
def test_items_json_array(rows, how, data):
    dicts = _item_rows(rows)
    raw, changed = json.dumps(dicts, indent=1).encode(), None
    if how == "json":
        text, changed = data.draw(mutated_json(dicts))
        raw = text.encode()
    elif how == "bytes":
        raw = data.draw(mutated_bytes(raw))
    with scratch() as folder:
        path = write_maybe_gz(folder / "items.json", raw)
        got = read_cleanly(lambda: load_items(path), folder, (path.name,), changed)
    if how == "valid":
        assert [(i.prompt, i.answer_matching_behavior) for i in got] == rows


# --- run-written folders: a store, an SAE, its feature database, a direction, run folders ----------


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama):
    """Valid folders to break: serve_runs' runs (an SAE with its features, a probe direction, a capture
    run folder) and a small activation store of two sites."""
    from serve_runs import SITE, make_runs

    from greyglass.store.config import CaptureConfig, CaptureRunConfig
    from greyglass.store.writer import run_capture

    root = make_runs(tmp_path_factory.mktemp("runs"), tiny_llama)
    cfg = CaptureRunConfig(capture=CaptureConfig(sites=(SITE, "blocks.0.hook_resid_post"), tokens=300, batch_tokens=64,
                                                 shard_tokens=100), corpus=CorpusConfig(context_size=16))
    run_capture(tiny_llama, cfg, root / "store", progress=False)
    _organism(root)
    return root


def _organism(root: Path) -> None:
    """An organism run folder from a two-step fine-tune of a tiny chat model (its model folder removed:
    transformers reads it, and it is not fuzzed here)."""
    from greyglass.cli import main
    from greyglass.models.tiny import tiny_model

    chat = tiny_model("llama", chat=True, seed=2)
    chat.model.save_pretrained(root / "tiny-chat")
    chat.tokenizer.save_pretrained(root / "tiny-chat")
    assert main(["organism", "train", "--model", str(root / "tiny-chat"), "--n-train", "4", "--n-test", "4",
                 "--steps", "2", "--answer-tokens", "4", "--out", str(root / "organism"), "--no-progress"]) == 0
    shutil.rmtree(root / "organism" / "model")


def _mutate_file(data, path: Path) -> tuple | None:
    """Break `path` in place: its JSON, its tensors or its bytes; the path of the JSON value changed, if one was."""
    raw = path.read_bytes()
    if path.suffix == ".json" and data.draw(st.booleans(), label="json-level"):
        text, at = data.draw(mutated_json(json.loads(raw)))
        path.write_text(text)
        return at
    if path.suffix == ".safetensors" and data.draw(st.booleans(), label="tensor-level"):
        tensors, _ = data.draw(mutated_tensors(load_file(str(path))))
        save_file(tensors, str(path))
    else:
        path.write_bytes(data.draw(mutated_bytes(raw)))
    return None


def _break_one(data, folder: Path, names: list[str]) -> tuple[Path, tuple | None]:
    """One of `names` broken in place, and the path of the JSON value changed in it, if one was."""
    path = folder / data.draw(st.sampled_from(names), label="file")
    return path, _mutate_file(data, path)


def read_store(folder: Path):
    from greyglass.activations import store_windows
    from greyglass.store.manifest import META_KEYS
    from greyglass.store.reader import ActivationStore

    store = ActivationStore(folder)
    store.summary()
    keys = [*store.sites, *META_KEYS]
    rows = 0
    for i in range(len(store.manifest["shards"])):
        shard = store.read_shard(i, keys)
        n = len(shard["token_ids"])
        assert all(shard[s].shape == (n, store.d_model) for s in store.sites)
        assert all(shard[k].shape == (n,) for k in META_KEYS)
        rows += n
    for windows in store_windows(store, store.sites, 4):  # the windows training and statistics read
        assert all(a.shape[-1] == store.d_model for a in windows.acts.values())
    return store, rows


@given(data=st.data())
def test_activation_store(runs, data):
    store, rows = read_store(runs / "store")
    assert rows == store.n_tokens == 300
    with scratch(runs / "store") as folder:
        names = sorted(p.name for p in folder.iterdir() if p.suffix in (".json", ".safetensors"))
        path, changed = _break_one(data, folder, names)
        read_cleanly(lambda: read_store(folder), folder, (path.name, str(folder)), changed)


def read_sae_folder(folder: Path):
    from greyglass.sae.io import load_sae, load_sparsity, read_training

    sae = load_sae(folder)
    assert sae.W_enc.shape == (sae.cfg.d_in, sae.cfg.d_sae) and all(torch.isfinite(p).all() for p in sae.parameters())
    sparsity = load_sparsity(folder)
    assert sparsity is None or sparsity.shape == (sae.cfg.d_sae,)
    assert isinstance(read_training(folder), dict)
    return sae


@given(arch=st.sampled_from(["relu", "topk", "jumprelu", "batchtopk"]), data=st.data())
def test_sae_folder(arch, data):
    from greyglass.sae.architectures import create_sae
    from greyglass.sae.config import ARCHITECTURES, SAEConfig
    from greyglass.sae.io import save_sae

    torch.manual_seed(0)
    sae = create_sae(SAEConfig(d_in=8, d_sae=16, arch=ARCHITECTURES[arch](**({"k": 4} if "topk" in arch else {})),
                               hook_name="blocks.1.hook_resid_post"))
    with scratch() as folder:
        save_sae(sae, folder / "sae", sparsity=torch.linspace(-3, 0, 16), training={"tokens": 10})
        folder = folder / "sae"
        x = torch.randn(5, 8)
        assert torch.allclose(read_sae_folder(folder).encode(x), sae.eval().encode(x), atol=1e-5)
        path, changed = _break_one(data, folder, sorted(p.name for p in folder.iterdir()))
        read_cleanly(lambda: read_sae_folder(folder), folder, (path.name, str(folder)), changed)


def read_direction(folder: Path):
    from greyglass.directions import Direction

    d = Direction.load(folder)
    d.check_model(d.d_model)
    assert torch.isfinite(d.score(torch.randn(3, d.d_model))).all()
    return d


@given(data=st.data())
def test_direction_folder(runs, data):
    assert read_direction(runs / "probe" / "p1" / "direction").kind == "logistic"
    with scratch(runs / "probe" / "p1" / "direction") as folder:
        path, changed = _break_one(data, folder, sorted(p.name for p in folder.iterdir()))
        read_cleanly(lambda: read_direction(folder), folder, (path.name,), changed)


def read_run_folder(folder: Path):
    """What the CLI, report and browser do with a run folder: the typed run, then its section rendered."""
    from greyglass.job import read_job_run
    from greyglass.jobs import JOBS_BY_NAME
    from greyglass.report.build import section_for
    from greyglass.report.page import render_page
    from greyglass.runs import read_run

    section = section_for(folder)
    section.summary()
    render_page([section], "fuzz")
    _browse(folder)
    kind = read_run(folder)[0].get("kind")
    return read_job_run(JOBS_BY_NAME[kind], folder) if isinstance(kind, str) and kind in JOBS_BY_NAME else None


def _browse(folder: Path) -> None:
    """The browser's run list and run page over the folder (beside a valid run), which must not fail."""
    from starlette.testclient import TestClient

    from greyglass.serve.app import create_app

    client = TestClient(create_app(folder.parent, load=None), raise_server_exceptions=False)
    for url in ("/", f"/run/{folder.name}"):
        r = client.get(url)
        assert r.status_code in (200, 404) and "Traceback" not in r.text, (url, r.status_code, r.text[:300])


@given(run=st.sampled_from(["capture/c1", "sae/s1/features", "organism"]), data=st.data())
def test_run_folder(runs, run, data):
    assert read_run_folder(runs / run) is not None
    with scratch(runs / run) as folder:
        shutil.copytree(runs / "capture" / "c1", folder.parent / "valid")
        path, changed = _break_one(data, folder, ["config.json", "results.json"])
        read_cleanly(lambda: read_run_folder(folder), folder, (path.name,), changed)


def read_feature_db(folder: Path):
    from greyglass.latents.db import FeatureDB

    db = FeatureDB(folder)
    for row in db.latent_rows()[:3]:
        db.latent(row["latent"])
    db.fires_on("the")
    db.search("the")
    return db


@given(data=st.data())
def test_feature_db(runs, data):
    read_feature_db(runs / "sae" / "s1" / "features")
    with scratch(runs / "sae" / "s1" / "features") as folder:
        path = folder / "features.sqlite"
        path.write_bytes(data.draw(mutated_bytes(path.read_bytes())))
        read_cleanly(lambda: read_feature_db(folder), folder, (path.name,))


SQL_DAMAGE = ("DROP TABLE latents", "DROP TABLE meta", "DELETE FROM meta WHERE key = 'd_sae'",
              "UPDATE meta SET value = '\"x\"' WHERE key = 'd_sae'", "UPDATE meta SET value = 'not json'",
              "UPDATE latents SET hist = 'not json'", "UPDATE latents SET promoted = NULL",
              "UPDATE contexts SET tokens = '[1, 2'", "DELETE FROM vocab", "DROP TABLE latent_text",
              "UPDATE contexts SET acts = '[]'")


@given(damage=st.sampled_from(SQL_DAMAGE))
def test_feature_db_tables(runs, damage):
    import sqlite3

    with scratch(runs / "sae" / "s1" / "features") as folder:
        con = sqlite3.connect(folder / "features.sqlite")
        con.execute(damage)
        con.commit()
        con.close()
        read_cleanly(lambda: read_feature_db(folder), folder, ("features.sqlite",))


# --- the defects the fuzzing found, kept as plain regressions --------------------------------------

TEXT_REGRESSIONS = [
    # (file name, bytes, what the error says; None: loads)
    ("s.csv", b'statement,label\n"a\rb",1\n', None),  # a quoted \r was read as \n (csv needs newline="")
    ("s.jsonl", b'{"statement": "a", "label": 1' + b"9" * 5000 + b"}\n", "not valid JSON"),  # ValueError escaped
    ("s.jsonl", b"[" * 100_000 + b"\n", "nested too deeply"),  # RecursionError escaped
    ("s.jsonl", '{"statement": "é", "label": 1}\n'.encode("utf-16"), "cannot be read as UTF-8"),  # UnicodeDecodeError
    ("s.csv", b"statement,label\n\xff\xfe,1\n", "cannot be read as UTF-8"),
    ("s.csv.gz", gzip.compress(b"statement,label\nx,1\n")[:-6], "cannot be read as UTF-8"),  # EOFError escaped
    ("s.csv", b'statement,label\n"' + b"x" * 200_000 + b'",1\n', "longer than"),  # csv.Error (field limit)
    ("items.json", b'[{"question": "q", "answer_matching_behavior": ' + b"[" * 5000, "nested too deeply"),
    ("s.jsonl", b'{"statement": "a\\ud800", "label": 1}\n', "surrogate"),  # UnicodeEncodeError when hashed or written
    ("items.jsonl", b'{"question": "q\\udc00", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"}',
     "surrogate"),
    ("items.jsonl", b'{"question": "q", "answer_matching_behavior": null, "answer_not_matching_behavior": " (B)"}',
     "field 'answer_matching_behavior'"),  # the field was not named
]


@pytest.mark.parametrize("name,raw,error", TEXT_REGRESSIONS)
def test_text_reader_regressions(tmp_path, name, raw, error):
    path = tmp_path / name
    path.write_bytes(raw)
    read = load_items if name.startswith("items") else read_statements
    with mock.patch.object(files, "MAX_TEXT_CHARS", 100_000):
        if error is None:
            assert read(path)[0].text == "a\rb"
        else:
            with pytest.raises(files.GreyglassError, match=error) as e:
                read(path)
            assert name in str(e.value)


def test_folder_reader_regressions(runs, tmp_path):
    """Run-written folders whose damage escaped as KeyError, TypeError, sqlite3 or safetensors errors."""
    from greyglass.errors import GreyglassError

    def broken(src: str, file: str, change) -> Path:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        shutil.copytree(runs / src, folder)
        change(folder / file)
        return folder

    def edit_json(**fields):
        def change(path: Path):
            data = json.loads(path.read_text())
            data.update(fields)
            path.write_text(json.dumps({k: v for k, v in data.items() if v is not ...}))
        return change

    cases = [
        (read_direction, broken("probe/p1/direction", "direction.json", edit_json(site=...)), "field 'site'"),
        (read_direction, broken("probe/p1/direction", "direction.json", edit_json(bias=None)), "field 'bias'"),
        (read_sae_folder, broken("sae/s1", "cfg.json", edit_json(d_in=False)), "d_in"),
        (read_sae_folder, broken("sae/s1", "cfg.json", edit_json(d_in=2**40, d_sae=2**40)), "W_enc"),  # no allocation
        (read_sae_folder, broken("sae/s1", "training.json", edit_json(sae={"arch": "topk"})), "training.json"),
        (read_sae_folder, broken("sae/s1", "sparsity.safetensors", lambda p: p.write_bytes(b"{}")), "sparsity"),
        (read_feature_db, broken("sae/s1/features", "features.sqlite", lambda p: p.write_bytes(b"x" * 4096)),
         "features.sqlite is damaged"),
        (read_store, broken("store", "manifest.json", lambda p: p.write_text("[]")), "expected a JSON object"),
        (read_store, broken("store", "manifest.json", lambda p: p.write_text(p.read_text().replace(
            "shard_00000.safetensors", "x" * 300))), "cannot be read"),  # OSError (name too long) escaped
        (read_store, broken("store", "manifest.json", edit_json(format="v0")), "field 'format'"),
        (read_run_folder, broken("capture/c1", "config.json", edit_json(layout=None)), "field 'layout'"),  # as "older"
    ]
    for read, folder, error in cases:
        with pytest.raises(GreyglassError, match=error):
            read(folder)
    # provenance only, so any JSON value reads (a list was an AttributeError in the section and the layout check)
    assert read_run_folder(broken("capture/c1", "config.json", edit_json(model=[None]))) is not None
    with pytest.raises(GreyglassError, match="greyglass of unknown version .older results layout"):
        read_run_folder(broken("capture/c1", "config.json", edit_json(versions=[None], layout=1)))


@pytest.mark.parametrize("raw", [b"", b"[1, 2]", b'{"a": 1}', b"[" * 5000, b"\xff"])
def test_organism_answer_cache_that_is_damaged_is_named(tmp_path, raw):
    from greyglass.errors import GreyglassError
    from greyglass.organism.run import _cached_originals

    (tmp_path / "original_answers.json").write_bytes(raw)
    with pytest.raises(GreyglassError, match="original_answers.json"):
        _cached_originals(tmp_path, lambda: pytest.fail("a damaged cache is not silently regenerated"))
    (tmp_path / "original_answers.json").write_text('["a", "b"]')
    assert _cached_originals(tmp_path, list) == ["a", "b"]


# --- the other user files: steering pairs, labelled pressure turns, concepts -------------------------


@given(texts=st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=4), data=st.data())
def test_steering_pairs(texts, data):
    from greyglass.steer.vectors import read_pairs

    raw, changed = data.draw(jsonl_case([{"positive": p, "negative": n} for p, n in texts]))
    with scratch() as folder:
        path = write_maybe_gz(folder / "pairs.jsonl", raw)
        got = read_cleanly(lambda: read_pairs(path), folder, (path.name,), changed)
    if changed is None:
        assert [(p.positive, p.negative) for p in got] == texts


@given(rows=st.lists(st.tuples(TEXT, st.sampled_from(["first", "report", "reply"]), TEXT, st.integers(0, 1)),
                     min_size=1, max_size=4), data=st.data())
def test_labelled_pressure_turns(rows, data):
    from greyglass.behaviour.pressure import read_labelled_turns

    dicts = [{"id": i, "step": s, "text": t, "label": y} for i, s, t, y in rows]
    raw, changed = data.draw(jsonl_case(dicts))
    with scratch() as folder:
        path = write_maybe_gz(folder / "turns.jsonl", raw)
        got = read_cleanly(lambda: read_labelled_turns(path), folder, (path.name,), changed)
    if changed is None:
        assert got == dicts


@given(how=st.sampled_from(["valid", "json", "bytes"]), data=st.data())
def test_concept_file(how, data):
    from greyglass.latents.concept import load_concept

    concept = {"name": "bridge", "description": "bridges", "target_words": ["bridge", "pont"],
               "sentences": {"en": ["The bridge is long."], "fr": ["Le pont est long."]},
               "controls": {"en": ["The cat sleeps."], "fr": ["Le chat dort."]}}
    raw, changed = json.dumps(concept).encode(), None
    if how == "json":
        text, changed = data.draw(mutated_json(concept))
        raw = text.encode()
    elif how == "bytes":
        raw = data.draw(mutated_bytes(raw))
    with scratch() as folder:
        path = folder / "concept.json"
        path.write_bytes(raw)
        got = read_cleanly(lambda: load_concept(str(path)), folder, (path.name,), changed)
    if how == "valid":
        assert got.sentences == concept["sentences"] and got.target_words == ("bridge", "pont")
    elif got is not None:
        assert all(isinstance(w, str) for w in got.target_words) and got.sentences


# --- SAE training checkpoints (read by `sae train --resume`) -----------------------------------------

CKPT_TRAIN = dict(tokens=64 * 8, batch_size=64, lr=1e-3, warmup_steps=1, checkpoint_every=64 * 4)


@pytest.fixture(scope="module")
def checkpoint(runs, tmp_path_factory):
    """A training run of a small TopK SAE on the store, cut after its checkpoint at step 4 of 8; the same
    run uninterrupted; and `train(out, resume, stop)`, which runs it."""
    from serve_runs import SITE

    from greyglass.activations import shuffled_rows, store_windows
    from greyglass.sae.config import SAEConfig, TopKConfig, TrainConfig
    from greyglass.sae.train import train_saes
    from greyglass.store.reader import ActivationStore

    store = ActivationStore(runs / "store")
    cfg = SAEConfig(arch=TopKConfig(k=4, k_aux=8), d_in=store.d_model, d_sae=32, dead_tokens=256, hook_name=SITE)
    tcfg = TrainConfig(**CKPT_TRAIN)

    def train(out: Path, resume: bool = False, stop: int | None = None):
        rows = shuffled_rows(lambda epoch: store_windows(store, [SITE], shard_seed=epoch), 64, buffer_rows=256)
        return train_saes([cfg], tcfg, itertools.islice(rows, stop), out, resume=resume, progress=False)

    root = tmp_path_factory.mktemp("checkpoint")
    full = train(root / "full")
    with pytest.raises(GreyglassError, match="stream ended"):  # after 6 batches: the checkpoint at step 4 stays
        train(root / "cut", stop=6)
    assert json.loads((root / "cut" / "checkpoint" / "state.json").read_text())["step"] == 4
    return root / "cut", full.saes[0], train


@pytest.mark.parametrize("field,value", [("step", 10**12), ("step", -1), ("step", "4"), ("saes", None)])
def test_sae_checkpoint_state_is_checked_before_resuming(checkpoint, tmp_path, field, value):
    """A checkpoint's `step` is how many batches resuming skips: a huge one read the endless stream forever."""
    cut, _, train = checkpoint
    shutil.copytree(cut, tmp_path / "cut")
    state = tmp_path / "cut" / "checkpoint" / "state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), field: value}))
    with pytest.raises(GreyglassError, match=f"state.json: field '{field}'"):
        train(tmp_path / "cut", resume=True)


def test_sae_checkpoint_resumes_to_the_uninterrupted_weights(checkpoint, tmp_path):
    cut, full, train = checkpoint
    shutil.copytree(cut, tmp_path / "cut")
    sae = train(tmp_path / "cut", resume=True).saes[0]
    assert all(torch.equal(a, b) for a, b in zip(sae.state_dict().values(), full.state_dict().values()))


def test_an_optimiser_state_renamed_by_damage_is_refused_before_training(checkpoint, tmp_path):
    # pickle stores a key's name once: one flipped byte renames it for every parameter, which loads
    # but failed with a KeyError ('exp_avg_sq') at the first step
    cut, _, train = checkpoint
    shutil.copytree(cut, tmp_path / "cut")
    file = tmp_path / "cut" / "checkpoint" / "optimizer0.pt"
    saved = torch.load(file, weights_only=True)
    saved["state"] = {p: {k.replace("exp_avg_sq", "exp_avg_sX"): v for k, v in s.items()} for p, s in saved["state"].items()}
    torch.save(saved, file)
    with pytest.raises(GreyglassError, match="saved state is damaged"):
        train(tmp_path / "cut", resume=True)


@given(data=st.data())
def test_sae_checkpoint(checkpoint, data):
    """`sae train --resume` from a broken checkpoint: training finishes (a changed but well-formed value,
    e.g. a flipped bit in a weight, is trained on), or a GreyglassError names the checkpoint and the run
    folder is left as it was."""
    from fuzzing import folder_hashes

    cut, _, train = checkpoint
    with scratch(cut) as out:
        folder = out / "checkpoint"
        _break_one(data, folder, sorted(p.name for p in folder.iterdir()))
        before = folder_hashes(out)
        try:
            sae = train(out, resume=True).saes[0]
        except GreyglassError as e:
            assert str(folder) in str(e), e
            assert folder_hashes(out) == before, "a refused resume changed the run folder"
            return
        assert sae.W_enc.shape == (sae.cfg.d_in, 32) and not folder.exists()


# --- Hugging Face model folders (`--model PATH`) -------------------------------------------------------

MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
               "chat_template.jinja")


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    """Tiny chat models of two families (llama: untied, rotary; gpt2: tied, Conv1D, learned positions),
    saved as `save_pretrained` writes them, and each one's logits on a fixed text."""
    from greyglass.models.tiny import tiny_model

    root = tmp_path_factory.mktemp("models")
    logits = {}
    for family in ("llama", "gpt2"):
        lm = tiny_model(family, n_layers=2, d_model=32, chat=True)
        lm.model.save_pretrained(root / family)
        lm.tokenizer.save_pretrained(root / family)
        logits[family] = lm.model(lm.tokenizer("Hello, world", return_tensors="pt").input_ids).logits
    return root, logits


def read_model_folder(folder: Path):
    """What every `--model PATH` does: load it; then encode a text and run the model on it."""
    from greyglass.models.loader import load_model

    lm = load_model(str(folder))
    ids = lm.tokenizer("Hello, world", return_tensors="pt").input_ids  # [1, T]
    logits = lm.model(ids).logits  # [1, T, vocab]
    assert logits.shape == (1, ids.shape[1], lm.model.get_input_embeddings().weight.shape[0])
    assert all(torch.isfinite(p).all() for p in lm.model.parameters())
    if lm.is_chat:
        lm.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    return logits


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_model_folder_loads_back_exactly(model_folders, family):
    root, logits = model_folders
    assert torch.equal(read_model_folder(root / family), logits[family])


@given(family=st.sampled_from(["llama", "gpt2"]), name=st.sampled_from(MODEL_FILES), delete=st.integers(0, 5),
       data=st.data())
def test_model_folder(model_folders, family, name, delete, data):
    """A folder with one file broken or missing: it loads (a changed but well-formed value, e.g. a flipped
    bit in a weight or another rms_norm_eps, is a model too), or the error names the file, and for
    config.json the field (tokenizer.json's fields belong to the tokenizers library: file only)."""
    root, _ = model_folders
    with scratch(root / family) as folder:
        path = folder / name
        if delete == 0:
            path.unlink()
            changed = None
        else:
            changed = _mutate_file(data, path)
        read_cleanly(lambda: read_model_folder(folder), folder, (name, str(folder)),
                     changed if name == "config.json" else None)


def _config_edit(**fields):
    def change(folder: Path):
        config = json.loads((folder / "config.json").read_text())
        config.update(fields)
        (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not ...}))
    return change


def _tensor_edit(change_one):
    def change(folder: Path):
        tensors = load_file(str(folder / "model.safetensors"))
        change_one(tensors)
        save_file(tensors, str(folder / "model.safetensors"))
    return change


def _nan(tensors):
    tensors["model.norm.weight"][3] = float("nan")


MODEL_REGRESSIONS = [
    # (what breaks the llama folder, what the error says); before, each escaped as the exception in the comment,
    # or loaded a model that was not the saved one
    (_config_edit(vocab_size=300), r"model.safetensors: tensor 'lm_head.weight' is F32 \[259, 32\], but .* \[300, 32\].*"
     "vocab_size=300"),  # RuntimeError
    (_config_edit(hidden_size=...), r"hidden_size=4096"),  # RuntimeError: the default, 4096, did not fit
    (_config_edit(hidden_size=2**40), r"\[259, 1099511627776\]"),  # refused before anything of that size exists
    (_config_edit(num_hidden_layers=1), r"hold tensors the model does not use .*model.layers.1"),  # loaded 1 of 2 layers
    (_config_edit(num_hidden_layers=3), r"lack tensors the model needs .*model.layers.2"),  # a random third layer
    (_config_edit(num_hidden_layers=10**6), r"field 'num_hidden_layers' is 1000000"),  # minutes, then out of memory
    (_config_edit(hidden_size="64"), r"config.json: .*field 'hidden_size'"),  # StrictDataclassFieldValidationError
    (_config_edit(hidden_act="nope"), r"config.json: .*field 'hidden_act'.*KeyError"),  # KeyError
    (_config_edit(rope_parameters={"rope_type": "zzz"}), r"field 'rope_parameters'"),  # KeyError
    (_config_edit(pad_token_id=10**9), r"field 'pad_token_id'"),  # AssertionError
    (_config_edit(model_type=...), r"config.json: field 'model_type'"),
    (lambda f: (f / "config.json").write_text("[]"), r"config.json: expected a JSON object"),  # TypeError
    (lambda f: (f / "model.safetensors").write_bytes(b"\x10"), r"model.safetensors: the weights file is damaged"),
    (_tensor_edit(_nan), r"model.safetensors: tensor 'model.norm.weight' holds NaN"),  # loaded
    (_tensor_edit(lambda t: t.update({"model.norm.weight": t["model.norm.weight"].to(torch.int64)})),
     r"'model.norm.weight' is I64 \[32\], but config.json makes it a float tensor"),  # loaded, cast to float
    (lambda f: (f / "tokenizer.json").write_text("[]"), r"tokenizer files .*tokenizer.json.* cannot be read"),  # TypeError
    (lambda f: (f / "tokenizer.json").write_text("{}"), r"tokenizer files .*cannot be read"),  # KeyError
    (lambda f: (f / "chat_template.jinja").write_text("{% for %}"), r"cannot be read: TemplateSyntaxError"),  # at 1st chat
]


@pytest.mark.parametrize("change,error", MODEL_REGRESSIONS)
def test_model_folder_regressions(model_folders, tmp_path, change, error):
    root, _ = model_folders
    shutil.copytree(root / "llama", tmp_path / "m")
    change(tmp_path / "m")
    with pytest.raises(GreyglassError, match=error) as e:
        read_model_folder(tmp_path / "m")
    assert str(tmp_path / "m") in str(e.value)
