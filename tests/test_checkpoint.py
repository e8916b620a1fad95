"""Checkpoints are data only, restore a learner bit for bit, and refuse anything damaged or too new."""

import json
import pickle
import struct

import pytest
import torch

import clnp
from clnp.experiments import checkpoint as ck
from clnp.experiments.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

from .conftest import quick_config

MODELS = ["mlp:32,24", "cnn:16,16/32:bn"]


def _learner(spec: str, seed: int) -> clnp.CLNP:
    torch.manual_seed(seed)
    return clnp.CLNP(clnp.build_model(spec, (1, 8, 8)), quick_config(epochs=4, finetune_epochs=1))


def _small(task: clnp.Task, n: int = 150) -> clnp.Task:
    """The task with its first ``n`` training examples (keeps the tests fast)."""
    return clnp.Task(task.name, task.n_classes, clnp.Split(task.train.x[:n], task.train.y[:n]), task.val, task.test)


def _outputs(learner: clnp.CLNP, probe: torch.Tensor) -> list[torch.Tensor]:
    learner.net.eval()
    with torch.no_grad():
        return [learner.net(probe, t) for t in range(learner.net.n_tasks)]


def _save(learner: clnp.CLNP, directory, step: int):
    tensors, meta = learner.learner_state()
    return save_checkpoint(directory, tensors, {"learner": meta}, step=step)


@pytest.mark.parametrize("spec", MODELS)
def test_restored_learner_gives_bit_identical_outputs_and_continues_identically(spec, digit_tasks, tmp_path):
    tasks = [_small(t) for t in digit_tasks]
    original = _learner(spec, seed=0)
    for task in tasks[:2]:
        original.learn(task)
    _save(original, tmp_path / "ck", step=2)

    restored = _learner(spec, seed=123)  # different initial weights: everything must come from the file
    tensors, meta, _ = load_checkpoint(tmp_path / "ck")
    restored.load_learner_state(tensors, meta["learner"])
    probe = torch.rand(40, 1, 8, 8)
    for a, b in zip(_outputs(original, probe), _outputs(restored, probe), strict=True):
        assert torch.equal(a, b)
    assert restored.capacity() == original.capacity()

    original.learn(tasks[2])
    restored.learn(tasks[2])
    for a, b in zip(_outputs(original, probe), _outputs(restored, probe), strict=True):
        assert torch.equal(a, b)
    assert restored.capacity() == original.capacity()


def test_files_are_plain_safetensors_and_json_and_loading_never_unpickles(digit_tasks, tmp_path, monkeypatch):
    learner = _learner(MODELS[0], seed=0)
    learner.learn(digit_tasks[0])
    meta_path = _save(learner, tmp_path, step=1)
    meta = json.loads(meta_path.read_text())
    data = (tmp_path / meta["tensor_file"]).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])  # safetensors: u64 header length, JSON header, raw bytes
    header = json.loads(data[8:8 + header_len])
    assert "blocks.0.layer.owner" in header and not data.startswith(b"\x80")  # no pickle protocol marker

    def refuse(*args, **kwargs):
        raise AssertionError("loading a checkpoint must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    tensors, loaded, rng = load_checkpoint(tmp_path)
    assert loaded["learner"]["heads"] == [2] and rng.dtype == torch.uint8
    assert torch.equal(tensors["blocks.0.layer.owner"], learner.net.blocks[0].layer.owner)


@pytest.fixture
def saved(digit_tasks, tmp_path):
    learner = _learner(MODELS[0], seed=0)
    learner.learn(digit_tasks[0])
    meta_path = _save(learner, tmp_path, step=1)
    return tmp_path, tmp_path / json.loads(meta_path.read_text())["tensor_file"], meta_path


def test_truncated_tensor_file_is_refused_naming_the_file(saved):
    directory, tensor_file, _ = saved
    tensor_file.write_bytes(tensor_file.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_checkpoint(directory)
    assert str(tensor_file) in str(info.value)


def test_tampered_tensor_file_is_refused_by_its_checksum(saved):
    directory, tensor_file, _ = saved
    data = bytearray(tensor_file.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight, same size
    tensor_file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch") as info:
        load_checkpoint(directory)
    assert str(tensor_file) in str(info.value)


def test_newer_format_version_is_refused(saved):
    directory, _, meta_path = saved
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = ck.FORMAT_VERSION + 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="newer") as info:
        load_checkpoint(directory)
    assert str(meta_path) in str(info.value)


def test_truncated_metadata_is_refused(saved):
    directory, _, meta_path = saved
    meta_path.write_bytes(meta_path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="not valid JSON") as info:
        load_checkpoint(directory)
    assert str(meta_path) in str(info.value)


def test_checkpoint_error_is_a_value_error_for_the_cli(saved):
    assert issubclass(CheckpointError, ValueError)


def test_a_write_interrupted_before_its_commit_leaves_the_previous_checkpoint(digit_tasks, tmp_path, monkeypatch):
    learner = _learner(MODELS[0], seed=0)
    learner.learn(digit_tasks[0])
    _save(learner, tmp_path, step=1)
    before, _, _ = load_checkpoint(tmp_path)
    learner.learn(digit_tasks[1])

    real = ck.atomic_write_text

    def die_on_meta(path, text):
        if str(path).endswith(ck.META_NAME):
            raise KeyboardInterrupt("killed before meta.json was replaced")
        real(path, text)

    monkeypatch.setattr(ck, "atomic_write_text", die_on_meta)
    with pytest.raises(KeyboardInterrupt):
        _save(learner, tmp_path, step=2)
    tensors, meta, _ = load_checkpoint(tmp_path)
    assert meta["step"] == 1 and meta["learner"]["heads"] == [2]
    assert tensors.keys() == before.keys() and all(torch.equal(tensors[k], before[k]) for k in before)
