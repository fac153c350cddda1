import gzip
import json

import pytest

from greyglass import GreyglassError
from greyglass.data import CorpusConfig, corpus_fingerprint, documents, windows
from greyglass.models.tiny import byte_tokenizer


@pytest.fixture(scope="module")
def tok():
    return byte_tokenizer()


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_default_corpus_is_bundled_and_deterministic(tok):
    a = _take(windows(tok, CorpusConfig(context_size=16, seed=1), True), 5)
    b = _take(windows(tok, CorpusConfig(context_size=16, seed=1), True), 5)
    c = _take(windows(tok, CorpusConfig(context_size=16, seed=2), True), 5)
    assert a == b
    assert a != c
    assert all(len(w.tokens) == 16 and w.tokens[0] == tok.bos_token_id and w.is_sink[0] for w in a)
    assert not any(any(w.is_sink[1:]) for w in a)


def test_windows_without_bos_and_with_eos_between_documents(tok, write_lines):
    path = write_lines("c.jsonl", [json.dumps({"body": t}) for t in ["abc", "defg", "hi"]])
    cfg = CorpusConfig(corpus=str(path), text_field="body", context_size=4, prepend_bos=False, seed=0)
    ws = list(windows(tok, cfg, True))
    flat = [t for w in ws for t in w.tokens]
    eos = tok.eos_token_id
    assert len(ws) == 3  # 3 + 4 + 2 characters and one EOS after each document: 12 tokens
    assert all(w.is_sink == [True, False, False, False] for w in ws)  # no BOS: the first token is the sink
    assert flat.count(eos) == 3
    assert sorted(tok.decode([t for t in flat if t != eos])) == sorted("abcdefghi")
    by_doc = {d: tok.decode([t for t, dd in zip(flat, [d for w in ws for d in w.docs]) if dd == d and t != eos])
              for d in range(3)}
    assert by_doc == {0: "abc", 1: "defg", 2: "hi"}


def test_txt_gz_and_folders(tok, tmp_path):
    (tmp_path / "a.txt").write_text("hello world " * 10)
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "zzzz " * 10}) + "\n")
    cfg = CorpusConfig(corpus=str(tmp_path), context_size=8)
    got = list(documents(cfg))
    assert sorted(i for i, _ in got) == [0, 1]
    assert {t[:5] for _, t in got} == {"hello", "zzzz "}
    assert len(list(windows(tok, cfg, False))) > 5


def test_bad_json_line_names_file_and_line(tok, write_lines):
    path = write_lines("bad.jsonl", ['{"text": "fine"}', '{"text": "fine too"}', "{not json"])
    with pytest.raises(GreyglassError, match=r"bad\.jsonl line 3: not valid JSON"):
        list(documents(CorpusConfig(corpus=str(path))))


def test_missing_text_field_says_which_fields_exist(write_lines):
    path = write_lines("rows.jsonl", ['{"content": "x", "id": 1}'])
    with pytest.raises(GreyglassError, match=r"rows\.jsonl line 1: no text field 'text' \(found: content, id\)"):
        list(documents(CorpusConfig(corpus=str(path))))


def test_missing_corpus_and_bad_config(tmp_path):
    with pytest.raises(GreyglassError, match="does not exist"):
        list(documents(CorpusConfig(corpus=str(tmp_path / "nope.jsonl"))))
    with pytest.raises(GreyglassError, match="split"):
        CorpusConfig(split="test")  # type: ignore[arg-type]
    with pytest.raises(GreyglassError, match="context_size"):
        CorpusConfig(context_size=0)


def test_train_and_heldout_splits_are_disjoint(write_lines):
    path = write_lines("many.jsonl", [json.dumps({"text": f"doc {i}"}) for i in range(100)])
    train = {i for i, _ in documents(CorpusConfig(corpus=str(path), split="train"))}
    held = {i for i, _ in documents(CorpusConfig(corpus=str(path), split="heldout"))}
    assert held == set(range(19, 100, 20))
    assert train.isdisjoint(held) and train | held == set(range(100))


def test_fingerprint_changes_with_content_and_settings(write_lines):
    path = write_lines("f.jsonl", ['{"text": "one"}'])
    base = corpus_fingerprint(CorpusConfig(corpus=str(path)))
    assert base == corpus_fingerprint(CorpusConfig(corpus=str(path)))
    assert base != corpus_fingerprint(CorpusConfig(corpus=str(path), context_size=64))
    path.write_text('{"text": "two"}\n')
    assert base != corpus_fingerprint(CorpusConfig(corpus=str(path)))
