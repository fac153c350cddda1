"""llama.cpp control vectors from `steer-vector --export-gguf`: read back with the gguf package as llama.cpp does."""

import json

import gguf
import numpy as np
import pytest
import torch

from greyglass import GreyglassError
from greyglass.cli import main
from greyglass.directions import Direction
from greyglass.models.loader import load_model
from greyglass.steer.apply import steering_delta, typical_norm
from greyglass.steer.control_vector import control_vector_layer, write_control_vector

PAIRS = [{"positive": "I love this, it is wonderful", "negative": "I hate this, it is awful"},
         {"positive": "What a great day", "negative": "What a terrible day"}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from greyglass.models.tiny import tiny_model

    lm = tiny_model("llama")
    folder = tmp_path_factory.mktemp("tiny")
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def _field(reader: gguf.GGUFReader, key: str):
    field = reader.get_field(key)
    assert field is not None, key
    return field.contents()


def test_steer_vector_exports_a_control_vector_llama_cpp_reads(model_dir, tmp_path, write_lines, capsys):
    pairs = write_lines("pairs.jsonl", [json.dumps(p) for p in PAIRS])
    vec, cv = tmp_path / "vec", tmp_path / "cv" / "vector.gguf"
    assert main(["steer-vector", "--model", str(model_dir), "--pairs", str(pairs), "--layer", "2", "--out", str(vec),
                 "--export-gguf", str(cv)]) == 0
    assert str(cv) in capsys.readouterr().out  # the summary names the file
    reader = gguf.GGUFReader(cv)
    assert _field(reader, "general.architecture") == "controlvector"
    assert _field(reader, "controlvector.model_hint") == "llama"
    assert _field(reader, "controlvector.layer_count") == 1
    # what llama.cpp's loader checks: names direction.k with k >= 1, 1-D F32 tensors of the model's width
    [tensor] = reader.tensors
    assert tensor.name == "direction.2" and tensor.tensor_type == gguf.GGMLQuantizationType.F32
    assert list(tensor.shape) == [64] and tensor.data.dtype == np.float32
    lm = load_model(str(model_dir))
    direction = Direction.load(vec)
    want = steering_delta(lm, direction, 1.0)  # the vector `steer --coef 1` adds
    np.testing.assert_allclose(tensor.data, want.numpy(), rtol=1e-6, atol=1e-7)
    assert float(np.linalg.norm(tensor.data)) == pytest.approx(typical_norm(lm, "blocks.2.hook_resid_post"), rel=1e-5)
    assert json.loads((vec / "results.json").read_text())["control_vector"] == str(cv)


def test_layer_numbering_follows_llama_cpp():
    assert control_vector_layer("blocks.3.hook_resid_post") == 3  # added to block 3's output (l_out)
    assert control_vector_layer("resid_pre.3") == 2  # the same stream, before block 3
    for site, says in (("blocks.0.hook_resid_post", "block 0"), ("blocks.1.hook_resid_pre", "block 0"),
                       ("blocks.2.hook_attn_out", "residual stream between blocks")):
        with pytest.raises(GreyglassError, match=says):
            control_vector_layer(site)


def test_bad_export_paths_and_layers_are_one_line_errors(model_dir, tmp_path, write_lines, capsys):
    pairs = write_lines("pairs.jsonl", [json.dumps(p) for p in PAIRS])
    base = ["steer-vector", "--model", str(model_dir), "--pairs", str(pairs), "--out", str(tmp_path / "v")]
    assert main([*base, "--layer", "0", "--export-gguf", str(tmp_path / "a.gguf")]) == 2
    assert "never steers block 0" in capsys.readouterr().err
    assert main([*base, "--layer", "1", "--export-gguf", str(tmp_path / "a.safetensors")]) == 2
    assert "not a .gguf file name" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main([*base, "--layer", "1", "--export-gguf", str(tmp_path / "file" / "a.gguf")]) == 2
    assert "cannot write the control vector" in capsys.readouterr().err
    (tmp_path / "dir.gguf").mkdir()
    lm = load_model(str(model_dir))
    with pytest.raises(GreyglassError, match="is a folder"):
        write_control_vector(lm, Direction(torch.ones(64), "blocks.1.hook_resid_post", "mean_diff"), tmp_path / "dir.gguf")
    assert not list(tmp_path.glob(".a.gguf*"))  # no temporary file left behind
