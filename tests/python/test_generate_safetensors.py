"""`hubsim generate` writes shards that Python's `safetensors` package opens, and an index that
lists exactly their tensors.

Runs the hubsim binary from HUBSIM_BIN (default: target/debug/hubsim under the repository root;
build it with `cargo build -p hubsim`). No torch: numpy cannot hold BF16 or F8_E4M3, so those
tensors are checked through `get_slice` (dtype and shape), and F32 tensors are also read.
"""

import json
import math
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

REPO_ROOT = Path(__file__).resolve().parents[2]
HUBSIM = Path(os.environ.get("HUBSIM_BIN", REPO_ROOT / "target" / "debug" / "hubsim"))

DTYPE_SIZES = {"BF16": 2, "F32": 4, "F8_E4M3": 1}


def generate(out: Path, *flags: str) -> None:
    if not HUBSIM.is_file():
        pytest.fail(f"{HUBSIM} does not exist: run `cargo build -p hubsim` or set HUBSIM_BIN")
    result = subprocess.run(
        [str(HUBSIM), "generate", "--out", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


def raw_header(path: Path) -> dict:
    """The header as plain JSON, checked against the file's length by hand (a second reader
    besides the safetensors package)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0, f"{path.name}: header length {n} not padded to 8"
    header = json.loads(data[8 : 8 + n])
    entries = sorted(
        (v["data_offsets"], name) for name, v in header.items() if name != "__metadata__"
    )
    end = 0
    for (start, stop), name in entries:
        assert start == end, f"{path.name}: {name} does not follow the previous tensor"
        end = stop
    assert 8 + n + end == len(data), f"{path.name}: data region does not end the file"
    return header


def read_shards(directory: Path, shards: list[str]) -> tuple[dict[str, str], int]:
    """Opens every shard with safe_open; returns tensor -> shard and the sum of tensor bytes."""
    where: dict[str, str] = {}
    total = 0
    f32_read = 0
    for shard in shards:
        header = raw_header(directory / shard)
        with safe_open(str(directory / shard), framework="numpy") as f:
            assert f.metadata() == {"format": "pt"}
            keys = list(f.keys())
            assert keys, f"{shard} holds no tensor"
            assert set(keys) == set(header) - {"__metadata__"}
            for name in keys:
                assert name not in where, f"{name} in {where.get(name)} and {shard}"
                where[name] = shard
                view = f.get_slice(name)
                dtype, shape = view.get_dtype(), view.get_shape()
                assert dtype == header[name]["dtype"]
                assert list(shape) == header[name]["shape"]
                total += DTYPE_SIZES[dtype] * math.prod(shape)
                if dtype == "F32" and f32_read < 64:
                    tensor = f.get_tensor(name)
                    assert tensor.dtype == np.float32 and list(tensor.shape) == list(shape)
                    f32_read += 1
    return where, total


def test_r1_shards_open_and_match_the_index(tmp_path: Path) -> None:
    generate(
        tmp_path,
        "--repo", "deepseek-ai/DeepSeek-R1",
        "--shards", "163",
        "--total-size", "64MiB",
    )
    shards = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert shards == [f"model-{i:05d}-of-000163.safetensors" for i in range(1, 164)]

    where, total = read_shards(tmp_path, shards)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert where == index["weight_map"]
    assert total == index["metadata"]["total_size"]

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "deepseek_v3"
    assert config["num_hidden_layers"] == 61
    dtypes = {raw_header(tmp_path / where[n])[n]["dtype"] for n in where}
    assert dtypes == {"BF16", "F32", "F8_E4M3"}


def test_distill_single_file_opens(tmp_path: Path) -> None:
    generate(
        tmp_path,
        "--repo", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        "--layout", "distill",
        "--shards", "1",
        "--total-size", "8MiB",
    )
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["model.safetensors"]
    assert not (tmp_path / "model.safetensors.index.json").exists()
    where, _ = read_shards(tmp_path, ["model.safetensors"])
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "qwen2"
    assert len(where) == config["num_hidden_layers"] * 12 + 3
    assert "model.layers.27.mlp.down_proj.weight" in where
