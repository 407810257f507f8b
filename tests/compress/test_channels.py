"""Physical channel removal (issue 13 item 4): structured pruning takes zeroed output channels out of the
graph with the input channels that read them downstream (conv -> conv, conv -> pool -> depthwise -> conv,
conv -> reshape -> fully connected), so weights, MACs and activation RAM shrink, and the reshaped graph
runs bit-exact: the same outputs as the pruned model, and the native C the same as TFLite Micro."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeforge.analyze import op_macs
from edgeforge.compress import channels
from edgeforge.compress.apply import apply_recipe
from edgeforge.compress.layers import weight_layers
from edgeforge.compress.recipe import LayerChoice, Recipe
from edgeforge.hostrun import run_batch
from edgeforge.model.rewrite import pack, unpack
from edgeforge.model.tflite import read_tflite
from tests.compress.digits_int8 import Digits, digits_int8  # noqa: F401 (the fixture)


def _pruned(model: bytes, ops: list[int], monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, bytes]:
    """(removed, kept): the structured recipe applied with channel removal, and without it."""
    layers = weight_layers(model, read_tflite(model))
    recipe = Recipe.of("s", {op: LayerChoice(8, 0.5, structured=True) for op in ops})
    removed = apply_recipe(model, layers, recipe)
    with monkeypatch.context() as m:
        m.setattr(channels, "remove_dead_channels", lambda b: b)
        kept = apply_recipe(model, layers, recipe)
    return removed, kept


def _inputs(model: bytes, n: int = 24) -> np.ndarray:
    inp = read_tflite(model).input_tensors()[0]
    return np.random.default_rng(7).integers(-128, 128, (n, *inp.shape)).astype(np.int8)


def _macs(model: bytes) -> int:
    info = read_tflite(model)
    return sum(op_macs(op, info) for op in info.ops)


def test_conv_to_fully_connected_through_reshape_is_removed_bit_exact(digits_int8: Digits,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    model = digits_int8.model.read_bytes()
    info = read_tflite(model)
    conv_b = [la for la in weight_layers(model, info) if la.op == "CONV_2D"][-1]  # 1x1 conv -> flatten -> dense
    removed, kept = _pruned(model, [conv_b.op_index], monkeypatch)
    new = read_tflite(removed)
    out = info.ops[conv_b.op_index].outputs[0]
    assert info.tensors[out].shape[-1] == 32 and new.tensors[out].shape[-1] == 16
    fc = next(op for op in new.ops if op.op == "FULLY_CONNECTED")
    assert new.tensors[fc.inputs[1]].shape[1] == info.tensors[fc.inputs[1]].shape[1] // 2
    assert new.weight_bytes < read_tflite(kept).weight_bytes and _macs(removed) < _macs(kept)
    x = _inputs(model)
    assert np.array_equal(run_batch(removed, "tflm", x), run_batch(kept, "tflm", x))


def test_removal_continues_through_pool_and_depthwise(digits_int8: Digits, monkeypatch: pytest.MonkeyPatch) -> None:
    """conv_a -> max pool -> depthwise -> conv_b: the depthwise channels fed only by removed channels go too,
    bias included, so the result equals the pruned model with those depthwise biases zeroed."""
    model = digits_int8.model.read_bytes()
    info = read_tflite(model)
    layers = weight_layers(model, info)
    conv_a = layers[0]
    dw = next(la for la in layers if la.op == "DEPTHWISE_CONV_2D")
    removed, kept = _pruned(model, [conv_a.op_index], monkeypatch)
    new = read_tflite(removed)
    assert new.tensors[new.ops[dw.op_index].inputs[1]].shape[3] == 8  # of 16
    # the reference: the pruned model whose depthwise channels behind removed channels have zero bias
    kinfo = read_tflite(kept)
    dead = ~np.any(weight_layers(kept, kinfo)[0].values.reshape(16, -1) != 0, axis=1)
    tree = unpack(kept)
    bias = tree.subgraphs[0].tensors[kinfo.ops[dw.op_index].inputs[2]]
    data = np.asarray(tree.buffers[bias.buffer].data, dtype=np.uint8).view(np.int32).copy()
    data[dead] = 0
    tree.buffers[bias.buffer].data = data.view(np.uint8)
    reference = pack(tree)
    x = _inputs(model)
    assert np.array_equal(run_batch(removed, "tflm", x), run_batch(reference, "tflm", x))
    assert _macs(removed) < _macs(kept)


def test_a_removed_graph_runs_bit_exact_natively_and_needs_less_ram(cli, digits_int8: Digits, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    model = digits_int8.model.read_bytes()
    ops = [la.op_index for la in weight_layers(model, read_tflite(model)) if la.op == "CONV_2D"]
    removed, kept = _pruned(model, ops, monkeypatch)
    arena = {}
    for name, data in (("removed", removed), ("kept", kept)):
        (tmp_path / f"{name}.tflite").write_bytes(data)
        r = cli("build", tmp_path / f"{name}.tflite", "--target", "cortex-m4", "--runtime", "native", "--search",
                "never", "--out", tmp_path / name, "--json")
        assert r.code == 0, r.err
        arena[name] = json.loads(r.out)["native"]["arena_bytes"]
    assert arena["removed"] < arena["kept"]
    x = _inputs(model, 16)
    np.save(tmp_path / "x.npy", x.reshape(len(x), *x.shape[2:]))
    r = cli("run", tmp_path / "removed", "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert r.code == 0, r.err
    native = np.load(tmp_path / "y.npy").reshape(len(x), -1)
    assert np.array_equal(native, run_batch(removed, "tflm", x).reshape(len(x), -1))


def test_nothing_to_remove_leaves_the_model_byte_identical(tiny: Path) -> None:
    model = tiny.read_bytes()
    assert channels.remove_dead_channels(model) == model
    layers = weight_layers(model, read_tflite(model))
    unstructured = apply_recipe(model, layers, Recipe.of("u", {layers[0].op_index: LayerChoice(8, 0.5)}))
    assert channels.remove_dead_channels(unstructured) == unstructured


@pytest.mark.mlperf
def test_channels_feeding_a_residual_add_stay(mlperf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ResNet-8: a conv whose output meets another branch in ADD keeps its (zeroed) channels; one whose
    output only feeds the next conv loses them."""
    model = (mlperf / "ic" / "pretrainedResnet_quant.tflite").read_bytes()
    info = read_tflite(model)
    consumers: dict[int, list[str]] = {}
    for op in info.ops:
        for i in op.inputs:
            consumers.setdefault(i, []).append(op.op)
    convs = [op for op in info.ops if op.op == "CONV_2D"]
    into_add = next(op for op in convs if consumers.get(op.outputs[0]) == ["ADD"])
    into_conv = next(op for op in convs if consumers.get(op.outputs[0]) == ["CONV_2D"])
    removed, kept = _pruned(model, [into_add.index, into_conv.index], monkeypatch)
    new = read_tflite(removed)
    assert new.tensors[into_add.outputs[0]].shape == info.tensors[into_add.outputs[0]].shape
    assert new.tensors[into_conv.outputs[0]].shape[-1] < info.tensors[into_conv.outputs[0]].shape[-1]
    x = _inputs(model, 4)
    assert np.array_equal(run_batch(removed, "tflm", x), run_batch(kept, "tflm", x))
