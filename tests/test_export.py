"""A task exported on its own computes what the full CLNP network computes for it, with fewer units."""

import os
import shutil

import pytest
import torch
from torch import nn

import clnp
from clnp.core.layers import MaskedBatchNorm, MaskedConv2d, MaskedLinear
from clnp.exporting import export, load_state_dict_export, n_parameters, save_export, used_units
from clnp.exporting.files import SUFFIXES

from .conftest import quick_config

NETWORKS = {
    "mlp": lambda: clnp.mlp(64, (64, 48), input_shape=(1, 8, 8)),
    "cnn_bn": lambda: clnp.cnn((1, 8, 8), channels=(16, 16), dense=(32,), batch_norm=True),
}


@pytest.fixture(scope="module", params=list(NETWORKS))
def learned(request, digit_tasks):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is fastest, above all on a busy machine
    torch.manual_seed(0)
    net = NETWORKS[request.param]()
    learner = clnp.CLNP(net, quick_config(epochs=3, expected_tasks=len(digit_tasks)))
    for task in digit_tasks:
        learner.learn(task)
    net.eval()
    torch.set_num_threads(threads)
    return request.param, net, digit_tasks


def _full_logits(net, x, task):
    with torch.no_grad():
        return net(x, task)


@pytest.mark.parametrize("task", [0, 1, 2])
def test_exported_task_matches_the_full_network_with_fewer_parameters(learned, task):
    arch, net, tasks = learned
    x = torch.cat([tasks[task].test.x, torch.rand(64, 1, 8, 8)])
    model = export(net, task)
    with torch.no_grad():
        out = model(x)
    full = _full_logits(net, x, task)
    assert torch.equal(out.argmax(1), full.argmax(1))
    assert (out - full).abs().max().item() < 1e-5
    trunk_and_head = sum(p.numel() for p in net.blocks.parameters()) + n_parameters(net.heads[task])
    assert n_parameters(model) < trunk_and_head


def test_exported_model_is_plain_pytorch_without_masks(learned):
    _, net, _ = learned
    model = export(net, 2)
    assert isinstance(model, nn.Sequential) and not model.training
    for m in model.modules():
        assert not isinstance(m, (MaskedLinear, MaskedConv2d, MaskedBatchNorm))
    names = [name for name, _ in model.named_buffers()]
    assert not any(k in name for name in names for k in ("owner", "train_rows", "frozen", "mask"))


def test_export_keeps_exactly_the_units_the_task_reads(learned):
    _, net, _ = learned
    keep = used_units(net, 0)
    for k, owner in zip(keep, net.owners, strict=True):
        assert not k[(owner == clnp.FREE) | (owner > 0)].any(), "a free or later unit was kept for task 0"
    last = net.owners[-1]
    head = net.heads[0].weight.detach().abs().view(net.heads[0].n_units, last.numel(), -1).sum((0, 2))
    live = (last != clnp.FREE) & (last <= 0)
    assert torch.equal(keep[-1], live & (head > 0))


def test_batch_norm_can_be_kept_instead_of_folded(learned):
    arch, net, tasks = learned
    model = export(net, 1, fold_batch_norm=False)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model)
    assert has_bn == arch.endswith("bn")
    x = tasks[1].test.x
    assert (model(x) - _full_logits(net, x, 1)).abs().max().item() < 1e-5


LOADERS = {
    "state_dict": load_state_dict_export,
    "torchscript": lambda path: torch.jit.load(str(path)),
    "exported_program": lambda path: torch.export.load(str(path)).module(),
}


@pytest.mark.parametrize("fmt", list(LOADERS))
def test_saved_export_reloads_with_the_same_outputs_at_any_batch_size(learned, fmt, tmp_path):
    _, net, tasks = learned
    model = export(net, 1)
    path = tmp_path / f"task-1{SUFFIXES[fmt]}"
    save_export(model, path, fmt, net.input_shape)
    loaded = LOADERS[fmt](path)
    x = tasks[1].test.x
    with torch.no_grad():
        for batch in (x, x[:1]):
            assert torch.equal(loaded(batch), model(batch))


def test_export_of_an_unknown_task_says_which_tasks_exist(learned):
    _, net, _ = learned
    with pytest.raises(IndexError, match="3 task heads"):
        export(net, 7)


def _onnx_case(learned):
    """onnxruntime and the learned MLP, or a skip: without the onnx packages, or for the other architectures (one is
    enough for the ONNX round trip, which takes seconds)."""
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    arch, net, tasks = learned
    if arch != "mlp":
        pytest.skip("one architecture is enough for the ONNX round trip (it takes seconds)")
    return ort, net, tasks


def test_onnx_export_matches_when_the_onnx_packages_are_installed(learned, tmp_path):
    ort, net, tasks = _onnx_case(learned)
    model = export(net, 1)
    path = tmp_path / "task-1.onnx"
    save_export(model, path, "onnx", net.input_shape)
    x = tasks[1].test.x
    out = torch.from_numpy(ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0])
    assert torch.equal(out.argmax(1), _full_logits(net, x, 1).argmax(1))
    assert (out - _full_logits(net, x, 1)).abs().max().item() < 1e-5


def test_an_onnx_export_replaces_the_last_whole_and_a_failed_one_leaves_it(learned, tmp_path):
    """The exporter writes in place; clnp has it write into a scratch folder and moves the files into place, so a
    reader of the earlier export (a hard link here) keeps it whole, and a failed export (a model that cannot read
    the input shape given) leaves it as it was."""
    ort, net, tasks = _onnx_case(learned)
    path = tmp_path / "task.onnx"
    save_export(export(net, 0), path, "onnx", net.input_shape)
    held = tmp_path / "held" / "task-0.onnx"  # a hard link to the first export: what a reader has open
    held.parent.mkdir()
    os.link(path, held)
    first = held.read_bytes()
    files = save_export(export(net, 1), path, "onnx", net.input_shape)  # the graph, and its weights beside it
    assert files[0] == path and held.read_bytes() == first  # replaced by a new file, not rewritten in place
    shutil.rmtree(held.parent)
    before = {f: f.read_bytes() for f in files}
    with pytest.raises(Exception, match="shape|size|mat"):
        save_export(export(net, 0), path, "onnx", (3, 2, 2))
    assert {f: f.read_bytes() for f in files} == before
    assert sorted(tmp_path.iterdir()) == sorted(files)  # no scratch folder left behind
    x = tasks[1].test.x
    out = torch.from_numpy(ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0])
    assert torch.equal(out.argmax(1), _full_logits(net, x, 1).argmax(1))


def test_cli_exports_a_task_of_a_finished_run(tmp_path, capsys):
    from clnp.cli import main

    torch.set_num_threads(1)
    out = tmp_path / "run"
    assert main(["run", "--tasks", "2", "--epochs", "3", "--finetune-epochs", "1", "--out", str(out),
                 "--no-progress"]) == 0
    assert main(["export", str(out), "--task", "1", "--format", "state_dict"]) == 0
    printed = capsys.readouterr().out
    assert "units kept per layer" in printed
    model = load_state_dict_export(out / "export" / "task-1.safetensors")
    assert main(["export", str(out), "--task", "2"]) == 2
    assert "expected 0..1" in capsys.readouterr().err
    tasks = clnp.split_digits(seed=0)
    import json

    acc = json.loads((out / "results.json").read_text())["accuracy_matrix"][1][1]
    with torch.no_grad():
        pred = model(tasks[1].test.x).argmax(1)
    assert (pred == tasks[1].test.y).float().mean().item() == pytest.approx(acc)
