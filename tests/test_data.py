"""Data loaders on small files written in the official formats; downloads from a local HTTP server."""

import gzip
import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from clnp.data import datasets as D
from clnp.data.datasets import DataError

# ------------------------------------------------------------------------------------ helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 00 00 08 NDIM, big-endian dimensions, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_mnist(n_train: int = 30, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }


def write_idx_dir(directory: Path, arrays: dict[str, np.ndarray], gz: bool) -> dict[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for stem, array in arrays.items():
        payload = idx_bytes(array)
        name = stem + ".gz" if gz else stem
        if gz:
            payload = gzip.compress(payload)
        (directory / name).write_bytes(payload)
        written[name] = payload
    return written


def cifar_batch(n: int, n_classes: int, label_key: bytes, seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    y = [int(v) for v in rng.integers(0, n_classes, n)]
    return {b"batch_label": b"fake batch", label_key: y, b"data": x}, x, np.array(y)


def write_cifar10(root: Path, n: int = 12) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = root / D.CIFAR10_DIR
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate(D.CIFAR10_FILES):
        batch, x, y = cifar_batch(n, 10, b"labels", i)
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        out[name] = (x, y)
    return out


def write_cifar100(root: Path, n: int = 200) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = root / D.CIFAR100_DIR
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate(D.CIFAR100_FILES):
        batch, x, y = cifar_batch(n, 100, b"fine_labels", 10 + i)
        batch[b"coarse_labels"] = [v // 5 for v in batch[b"fine_labels"]]
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        out[name] = (x, y)
    return out


def md5(payload: bytes) -> str:
    return hashlib.md5(payload).hexdigest()


@pytest.fixture
def http_root(tmp_path):
    """A directory served over HTTP on 127.0.0.1; yields (directory, base URL, request log)."""
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "raw"])
def test_mnist_loads_the_four_idx_files_gzipped_or_raw(tmp_path, gz):
    arrays = fake_mnist()
    write_idx_dir(tmp_path / "mnist", arrays, gz=gz)
    ds = D.load_mnist(tmp_path)
    assert ds.x_train.shape == (30, 1, 28, 28) and ds.x_test.shape == (20, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert float(ds.x_train.min()) >= 0.0 and float(ds.x_train.max()) <= 1.0
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.float32) / 255.0)
    assert torch.equal(ds.x_train[:, 0], expected)
    assert torch.equal(ds.y_test, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)))
    assert ds.n_classes == 10 and ds.input_shape == (1, 28, 28)


def test_missing_idx_file_names_the_file_and_how_to_get_it(tmp_path):
    arrays = fake_mnist()
    del arrays["t10k-labels-idx1-ubyte"]
    write_idx_dir(tmp_path / "mnist", arrays, gz=True)
    with pytest.raises(DataError) as err:
        D.load_mnist(tmp_path)
    message = str(err.value)
    assert "t10k-labels-idx1-ubyte" in message and "missing" in message
    assert "--download" in message and "ossci-datasets" in message


def test_truncated_idx_file_is_refused(tmp_path):
    written = write_idx_dir(tmp_path / "mnist", fake_mnist(), gz=False)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte"
    path.write_bytes(written["train-images-idx3-ubyte"][:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*truncated"):
        D.load_mnist(tmp_path)


def test_truncated_gzip_stream_is_refused(tmp_path):
    written = write_idx_dir(tmp_path / "mnist", fake_mnist(), gz=True)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(written["train-images-idx3-ubyte.gz"][:200])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*(truncated|damaged)"):
        D.load_mnist(tmp_path)


def test_bad_magic_number_is_refused(tmp_path):
    written = write_idx_dir(tmp_path / "mnist", fake_mnist(), gz=False)
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte"
    path.write_bytes(b"\x12\x34" + written["train-labels-idx1-ubyte"][2:])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.*bad magic number 0x1234"):
        D.load_mnist(tmp_path)


def test_label_count_that_does_not_match_the_images_is_refused(tmp_path):
    arrays = fake_mnist()
    arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"][:29]
    write_idx_dir(tmp_path / "mnist", arrays, gz=True)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.*wrong count: 29 labels for the 30 images"):
        D.load_mnist(tmp_path)


def test_fashion_mnist_error_mentions_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-such-dir")
    monkeypatch.setenv("CLNP_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DataError) as err:
        D.load_fashion_mnist(tmp_path)
    assert "dataset-fashion-mnist" in str(err.value) and "fashion-mnist" in err.value.path


def test_fashion_mnist_prefers_the_given_data_dir_then_debian(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    write_idx_dir(debian, fake_mnist(n_train=11), gz=True)
    monkeypatch.setattr(D, "DEBIAN_FASHION_MNIST_DIR", debian)
    monkeypatch.setenv("CLNP_DATA_DIR", str(tmp_path / "empty"))
    assert D.load_fashion_mnist(tmp_path / "user").x_train.shape[0] == 11
    write_idx_dir(tmp_path / "user" / "fashion-mnist", fake_mnist(n_train=13), gz=False)
    assert D.load_fashion_mnist(tmp_path / "user").x_train.shape[0] == 13


@pytest.mark.skipif(not D.idx_files_present(D.DEBIAN_FASHION_MNIST_DIR),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_headers_are_the_official_sizes():
    sizes = {}
    for stem in D.IDX_FILES:
        with gzip.open(D.DEBIAN_FASHION_MNIST_DIR / (stem + ".gz"), "rb") as fh:
            head = fh.read(16)
        assert head[:3] == b"\x00\x00\x08"
        ndim = head[3]
        sizes[stem] = struct.unpack(f">{ndim}I", head[4:4 + 4 * ndim])
    assert sizes["train-images-idx3-ubyte"] == (60000, 28, 28)
    assert sizes["train-labels-idx1-ubyte"] == (60000,)
    assert sizes["t10k-images-idx3-ubyte"] == (10000, 28, 28)
    assert sizes["t10k-labels-idx1-ubyte"] == (10000,)


# ------------------------------------------------------------------------------------- CIFAR


def test_cifar10_loads_the_python_pickle_batches(tmp_path):
    written = write_cifar10(tmp_path)
    ds = D.load_cifar10(tmp_path)
    assert ds.x_train.shape == (5 * 12, 3, 32, 32) and ds.x_test.shape == (12, 3, 32, 32)
    assert ds.n_classes == 10 and ds.y_train.dtype == torch.int64
    x0, y0 = written["data_batch_1"]
    assert torch.equal(ds.x_train[:12], torch.from_numpy(x0.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0))
    assert torch.equal(ds.y_train[:12], torch.from_numpy(y0))
    assert torch.equal(ds.y_test, torch.from_numpy(written["test_batch"][1]))


def test_cifar100_uses_the_fine_labels(tmp_path):
    written = write_cifar100(tmp_path)
    ds = D.load_cifar100(tmp_path)
    assert ds.n_classes == 100 and ds.x_train.shape == (200, 3, 32, 32)
    assert torch.equal(ds.y_train, torch.from_numpy(written["train"][1]))


def test_missing_cifar_batch_names_the_file_and_the_archive(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / D.CIFAR10_DIR / "data_batch_3").unlink()
    with pytest.raises(DataError) as err:
        D.load_cifar10(tmp_path)
    assert err.value.path.endswith("data_batch_3") and "missing" in str(err.value)
    assert "cifar-10-python.tar.gz" in str(err.value) and "--download" in str(err.value)


def test_truncated_cifar_batch_is_refused(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / D.CIFAR10_DIR / "test_batch"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"test_batch.*truncated or damaged"):
        D.load_cifar10(tmp_path)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_unpickler_refuses_arbitrary_classes(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / D.CIFAR10_DIR / "data_batch_2"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_2.*refusing to load"):
        D.load_cifar10(tmp_path)


# ---------------------------------------------------------------------------------- download


def test_mnist_download_from_local_server_checks_md5s(tmp_path, http_root, monkeypatch):
    root, url, requests = http_root
    written = write_idx_dir(root, fake_mnist(), gz=True)
    monkeypatch.setattr(D, "MNIST_MD5", {name: md5(payload) for name, payload in written.items()})
    ds = D.load_mnist(tmp_path / "data", download=True, base_url=url)
    assert ds.x_train.shape == (30, 1, 28, 28)
    assert sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()) == sorted(written)
    assert len(requests) == 4
    D.load_mnist(tmp_path / "data", download=True, base_url=url)  # present: nothing fetched again
    assert len(requests) == 4


def test_download_with_wrong_checksum_is_refused_and_deleted(tmp_path, http_root):
    root, url, _ = http_root
    write_idx_dir(root, fake_mnist(), gz=True)  # not the real MNIST: the published MD5s cannot match
    target = tmp_path / "data"
    with pytest.raises(DataError) as err:
        D.load_mnist(target, download=True, base_url=url)
    message = str(err.value)
    assert "checksum mismatch" in message and "train-images-idx3-ubyte.gz" in message
    assert D.MNIST_MD5["train-images-idx3-ubyte.gz"] in message
    assert md5((root / "train-images-idx3-ubyte.gz").read_bytes()) in message
    assert not any((target / "mnist").iterdir())  # neither the file nor its .part remain


def test_download_of_a_missing_url_names_the_file(tmp_path, http_root):
    _, url, _ = http_root
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*download from .* failed"):
        D.load_mnist(tmp_path, download=True, base_url=url)


def cifar_tarball(build_root: Path, writer, folder: str) -> bytes:
    writer(build_root)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(build_root / folder, arcname=folder)
    return buffer.getvalue()


def test_cifar_download_extracts_the_verified_archive(tmp_path, http_root, monkeypatch):
    root, url, _ = http_root
    payload = cifar_tarball(tmp_path / "build", write_cifar10, D.CIFAR10_DIR)
    (root / D.CIFAR10_ARCHIVE[0]).write_bytes(payload)
    monkeypatch.setattr(D, "CIFAR10_ARCHIVE", (D.CIFAR10_ARCHIVE[0], md5(payload)))
    ds = D.load_cifar10(tmp_path / "data", download=True, base_url=url)
    assert ds.x_train.shape == (60, 3, 32, 32)
    assert (tmp_path / "data" / D.CIFAR10_ARCHIVE[0]).is_file()


def test_cifar_download_with_wrong_checksum_is_refused(tmp_path, http_root):
    root, url, _ = http_root
    (root / D.CIFAR100_ARCHIVE[0]).write_bytes(cifar_tarball(tmp_path / "build", write_cifar100, D.CIFAR100_DIR))
    expected = r"checksum mismatch for cifar-100-python\.tar\.gz.*eb9058c3a382ffc7106e4002c42a8d85"
    with pytest.raises(DataError, match=expected):
        D.load_cifar100(tmp_path / "data", download=True, base_url=url)
    assert not (tmp_path / "data" / D.CIFAR100_ARCHIVE[0]).exists()
    assert not (tmp_path / "data" / D.CIFAR100_DIR).exists()


@pytest.mark.parametrize("name", ["../escape.txt", "/tmp/clnp-absolute-escape.txt"])
def test_tar_extraction_refuses_paths_outside_the_target(tmp_path, name):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DataError, match="unsafe member"):
        D.extract_tar(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and not Path("/tmp/clnp-absolute-escape.txt").exists()


def test_tar_extraction_refuses_links(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DataError, match="link or special file"):
        D.extract_tar(archive, tmp_path / "out")
