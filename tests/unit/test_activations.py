"""The one activation source: windows from a store equal windows from the model; rows are their shuffled view."""

import pytest
import torch

from greyglass import GreyglassError
from greyglass.activations import (OUTLIER_NORM_RATIO, Windows, model_windows, rows_as_windows, shuffled_rows,
                                   store_windows, take_tokens, without_outliers)
from greyglass.data import CorpusConfig
from greyglass.store.config import CaptureConfig
from greyglass.store.reader import ActivationStore
from greyglass.store.writer import capture

SITES = ("blocks.2.hook_resid_post", "blocks.1.hook_mlp_out")
CORPUS = CorpusConfig(context_size=32)
N_WINDOWS = 40


@pytest.fixture(scope="module")
def store(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("acts") / "s"
    # 8 windows per forward, 24 per shard: batches of 5 windows cross shard boundaries
    capture(tiny_llama, CaptureConfig(sites=SITES, tokens=31 * N_WINDOWS, batch_tokens=256, shard_tokens=700), CORPUS,
            out, progress=False)
    return ActivationStore(out)


def _all(batches) -> Windows:
    batches = list(batches)
    return Windows(torch.cat([b.tokens for b in batches]), {s: torch.cat([b.acts[s] for b in batches]) for s in SITES},
                   torch.cat([b.docs for b in batches]), torch.cat([b.mask for b in batches]))


def test_store_and_model_give_the_same_windows_of_the_same_text(store, tiny_llama):
    from_store = list(store_windows(store, SITES, batch_windows=5))
    from_model = list(take_tokens(model_windows(tiny_llama, SITES, CORPUS, batch_windows=5), 31 * N_WINDOWS))
    assert [len(b.tokens) for b in from_store] == [len(b.tokens) for b in from_model] == [5] * 8
    a, b = _all(from_store), _all(from_model)
    assert a.tokens.shape == (N_WINDOWS, 32) and a.acts[SITES[0]].shape == (N_WINDOWS, 32, 64)
    assert torch.equal(a.mask, b.mask) and not a.mask[:, 0].any() and a.mask[:, 1:].all()
    assert torch.equal(a.tokens[a.mask], b.tokens[b.mask]) and torch.equal(a.docs[a.mask], b.docs[b.mask])
    for s in SITES:
        assert torch.equal(a.acts[s][a.mask], b.acts[s][b.mask])
    assert torch.equal(a.rows()[SITES[1]], b.rows()[SITES[1]])


def test_take_tokens_stops_without_asking_for_another_batch(tiny_llama):
    asked = []

    def counted():
        for w in model_windows(tiny_llama, SITES[:1], CORPUS, batch_windows=2):
            asked.append(1)
            yield w

    assert sum(int(w.mask.sum()) for w in take_tokens(counted(), 100)) == 124  # two batches of 2 x 31 rows
    assert len(asked) == 2


def _rows(store, seed, **kw):
    return shuffled_rows(lambda epoch: store_windows(store, SITES, 4, shard_seed=seed + epoch), 64,
                         buffer_rows=300, seed=seed, **kw)


def test_one_epoch_of_rows_is_a_permutation_of_the_window_rows(store):
    windows = _all(store_windows(store, SITES))
    batches = list(_rows(store, 0, epochs=1, drop_last=False))
    assert all(len(b[SITES[0]]) == 64 for b in batches[:-1]) and len(batches[-1][SITES[0]]) == 31 * N_WINDOWS % 64
    # several sites: each row keeps its position at every site, so the pair (site 0, site 1) is a row of the windows
    seen = torch.cat([torch.cat([b[SITES[0]], b[SITES[1]]], 1) for b in batches])
    rows = torch.cat([windows.rows()[SITES[0]], windows.rows()[SITES[1]]], 1)
    assert not torch.equal(seen, rows)
    assert torch.equal(seen.unique(dim=0), rows.unique(dim=0)) and len(seen) == len(rows) == 31 * N_WINDOWS


def test_the_shuffle_is_reproducible_for_a_seed_and_endless_without_epochs(store):
    first = [b[SITES[0]] for b, _ in zip(_rows(store, 5), range(30))]  # 30 x 64 rows: more than one pass
    again = [b[SITES[0]] for b, _ in zip(_rows(store, 5), range(30))]
    other = [b[SITES[0]] for b, _ in zip(_rows(store, 6), range(30))]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not torch.equal(first[0], other[0])
    assert len(first) == 30 and 30 * 64 > store.n_tokens


def test_rows_that_are_not_text_and_a_source_smaller_than_a_batch():
    rows = torch.randn(10, 4)
    batches = list(shuffled_rows(lambda e: [rows_as_windows({"": rows})], 4, buffer_rows=10, epochs=1))
    assert [len(b[""]) for b in batches] == [4, 4]  # the last 2 rows make no full batch
    seen = torch.cat([b[""] for b in batches])
    assert len(seen.unique(dim=0)) == 8 and all((rows == r).all(1).any() for r in seen)
    with pytest.raises(GreyglassError, match="gives 10 rows, fewer than one batch of 16"):
        next(shuffled_rows(lambda e: [rows_as_windows({"": rows})], 16, buffer_rows=100))


def test_a_store_that_kept_bos_still_leaves_the_first_position_out(tiny_llama, tmp_path, store):
    out = tmp_path / "bos"
    capture(tiny_llama, CaptureConfig(sites=SITES[:1], tokens=32 * 8, batch_tokens=256, keep_bos=True), CORPUS, out,
            progress=False)
    kept = next(store_windows(ActivationStore(out), SITES[:1]))
    assert kept.tokens[:, 0].eq(tiny_llama.tokenizer.bos_token_id).all()  # stored, but not counted
    assert not kept.mask[:, 0].any() and kept.mask[:, 1:].all()
    ref = next(store_windows(store, SITES[:1]))
    assert torch.equal(kept.acts[SITES[0]][kept.mask], ref.acts[SITES[0]][ref.mask])


def test_the_buffer_takes_chunks_larger_than_itself():
    rows = torch.arange(60.0)[:, None]  # [60, 1], every row distinct
    chunks = lambda epoch: [rows_as_windows({"x": rows[a:b]}) for a, b in ((0, 3), (3, 53), (53, 60))]
    seen = torch.cat([b["x"] for b in shuffled_rows(chunks, 4, buffer_rows=10, seed=1, epochs=2, drop_last=False)])
    assert len(seen) == 120 and torch.equal(seen.flatten().sort().values, rows.repeat(2, 1).flatten().sort().values)
    assert not torch.equal(seen[:60], rows)


def test_an_outlier_row_is_left_out_and_the_median_is_of_counted_rows_only():
    acts = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(0))  # [B, T, d]
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[:, 0] = False
    acts[:, 0] *= 1000  # the sink: huge, but not counted, so it moves no median
    acts[1, 3] *= 5 * OUTLIER_NORM_RATIO  # a planted outlier
    kept = without_outliers([acts], mask)
    assert not kept[1, 3] and kept.sum() == mask.sum() - 1 and not kept[:, 0].any()
    other = torch.randn(2, 6, 8, generator=torch.Generator().manual_seed(1))
    other[0, 2] *= 5 * OUTLIER_NORM_RATIO  # an outlier at a second site counts against the row at every site
    expected = kept.clone()
    expected[0, 2] = False
    assert torch.equal(without_outliers([acts, other], mask), expected)


def test_planted_outlier_rows_count_nowhere_model_store_or_training_rows(loud_llama, tmp_path):
    lm, q = loud_llama
    windows = _planted_windows(model_windows(lm, SITES, CORPUS, batch_windows=5))
    is_q = windows.tokens == q
    assert 0 < is_q[:, 1:].sum() < is_q.numel() / 20  # the corpus has some "v", not many
    assert torch.equal(windows.mask[:, 1:], ~is_q[:, 1:]) and not windows.mask[:, 0].any()
    for keep_bos in (False, True):  # a store drops them, or keeps them and its reader leaves them out
        out = tmp_path / f"store-{keep_bos}"
        capture(lm, CaptureConfig(sites=SITES, tokens=31 * N_WINDOWS, batch_tokens=256, shard_tokens=700,
                                  keep_bos=keep_bos), CORPUS, out, progress=False)
        stored = _planted_windows(store_windows(ActivationStore(out), SITES, batch_windows=5))
        n = len(stored.tokens) - 1  # the store's whole windows (it stops at the asked number of rows)
        assert torch.equal(stored.mask[:n], windows.mask[:n])
        assert torch.equal(stored.acts[SITES[0]][:n][stored.mask[:n]], windows.acts[SITES[0]][:n][windows.mask[:n]])
    rows = torch.cat([b[SITES[0]] for b in shuffled_rows(lambda e: [windows], 64, buffer_rows=300, epochs=1)])
    norms = rows.norm(dim=-1)
    assert norms.max() < OUTLIER_NORM_RATIO * norms.median()  # the SAE never trains on them
    assert windows.acts[SITES[0]][is_q].norm(dim=-1).min() > OUTLIER_NORM_RATIO * norms.median()


def _planted_windows(batches) -> Windows:
    return _all(take_tokens(batches, 31 * N_WINDOWS))
