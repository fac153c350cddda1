"""Padding token-id lists: the one helper against a naive list-building version."""

import random

import pytest
import torch

from greyglass.models.tokens import pad


def naive_pad(seqs, pad_id, side):
    width = max(len(s) for s in seqs)
    fill = [[pad_id] * (width - len(s)) for s in seqs]
    ids = [f + list(s) if side == "left" else list(s) + f for s, f in zip(seqs, fill)]
    mask = [[0] * len(f) + [1] * len(s) if side == "left" else [1] * len(s) + [0] * len(f)
            for s, f in zip(seqs, fill)]
    return ids, mask


@pytest.mark.parametrize("side", ["left", "right"])
def test_pad_matches_naive_padding(side):
    rng = random.Random(0)
    for _ in range(50):
        seqs = [[rng.randrange(1000) for _ in range(rng.randrange(0, 9))] for _ in range(rng.randrange(1, 6))]
        if not any(seqs):
            seqs.append([7])
        ids, mask = pad(seqs, pad_id=-5, side=side)
        want_ids, want_mask = naive_pad(seqs, -5, side)
        assert ids.dtype == mask.dtype == torch.long
        assert ids.tolist() == want_ids and mask.tolist() == want_mask


def test_last_real_token_is_where_each_side_says():
    seqs = [[1, 2, 3], [4], [5, 6]]
    right = pad(seqs, 0)
    assert right.ids[torch.arange(3), right.mask.sum(1) - 1].tolist() == [3, 4, 6]
    left = pad(seqs, 0, "left")
    assert left.ids[:, -1].tolist() == [3, 4, 6]
