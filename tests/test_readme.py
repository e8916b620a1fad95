"""The README's code runs as written: its Python blocks in order (library example, export, reload), its
YAML config, and the command lines of its command-line section parse."""

import re
import shlex
from pathlib import Path

import torch

from clnp.cli import build_parser
from clnp.experiments.config import load_config_file

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readmes_python_blocks_run_verbatim_and_the_export_matches_the_network(tmp_path, monkeypatch):
    blocks = _blocks("python")
    assert len(blocks) >= 4, "library example, export, save/reload, whole-network reload"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    learner, x = namespace["learner"], namespace["x"]
    learner.net.eval()
    with torch.no_grad():
        full = learner.net(x, 2)
        assert (namespace["logits"] - full).abs().max().item() < 1e-5
        assert torch.equal(namespace["same"](x), namespace["model"](x))
        namespace["fresh"].eval()
        for t in range(5):
            assert torch.equal(namespace["fresh"](x, t), learner.net(x, t))
    assert (tmp_path / "task-2.safetensors").stat().st_mode & 0o777 == 0o644


def test_the_readmes_yaml_config_is_a_valid_run_config(tmp_path):
    (block,) = _blocks("yaml")
    path = tmp_path / "c.yaml"
    path.write_text(block)
    cfg = load_config_file(path)
    assert cfg["lr"] == 1e-3 and cfg["tasks"] == 3


def test_the_readmes_command_lines_parse():
    parser = build_parser()
    lines = [line.split("#")[0].strip() for kind in ("text", "bash") for block in _blocks(kind)
             for line in block.splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("clnp ") and "--help" not in line]
    assert len(commands) >= 10
    for argv in commands:
        parser.parse_args(argv)


def test_the_readmes_image_folder_dataset_makes_a_task_that_clnp_learns(tmp_path, monkeypatch):
    """The README's own-dataset example, on a folder of PNG images written here."""
    import numpy as np
    from PIL import Image

    import clnp

    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in _blocks("python"):
        if "class ImageFolder" in block:
            exec(compile("import clnp\n" + block, str(README), "exec"), namespace)  # noqa: S102
    rng = np.random.default_rng(0)
    for part, n in (("train", 40), ("val", 12), ("test", 12)):
        for label, name in enumerate(("dark", "light")):
            folder = tmp_path / "my-data/task0" / part / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 100, (8, 8)) + 150 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    task = namespace["folder_task"]("my-data/task0", "task0")
    assert task.val.x.shape == (24, 1, 8, 8)
    learner = clnp.CLNP(clnp.mlp(64, (16,), input_shape=(1, 8, 8)),
                        clnp.CLNPConfig(epochs=10, finetune_epochs=1, batch_size=16, lr=1e-2))
    learner.learn(task)
    assert learner.accuracy(0, task.test.x, task.test.y) == 1.0
