"""The `loader` section of scripts/bench.py: training-loader throughput from shards against the folder layout.

For the shapes demo (PNG images) and the DTMF demo (WAV clips, log-mel features in the loader), as `vision_demo` and
`audio_demo` configure them: samples/s and MB/s (encoded file bytes delivered per second) of one epoch of the training
loader with 0, 1 and 2 workers, read from the data folder and from the shards `mmattn-shards` writes of it, and what
the demo's model consumes per second in training (forward, backward and AdamW step on a batch of the same loader).
The claim: with shards the loader delivers at least 3x what the model consumes (data is never the bottleneck), and
shards are not slower than files.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

DEMOS = {"images": "vision_demo", "audio": "audio_demo"}
WORKERS = (0, 1, 2)
# --quick: a few items per class and small batches, so the section stays a structure check for the tests.
QUICK_DATA = ["data.train_per_class=6", "data.val_per_class=2", "data.test_per_class=2", "data.batch_size=16"]
MB = 1e6


def _config(experiment: str, data_dir: Path, overrides: list[str]) -> Any:
    """The composed `train` config of `experiment` with its data under `data_dir`."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("mmattn.configs", version_base="1.3"):
        return compose("train", [f"experiment={experiment}", f"paths.data_dir={data_dir}", *overrides])


def _epoch_rate(datamodule: Any, epochs: int) -> tuple[float, int]:
    """Items per epoch of the training loader and its median seconds over `epochs` timed epochs (after one that
    starts the workers and warms the page cache)."""
    loader = datamodule.train_dataloader()
    for _ in loader:
        pass
    seconds = []
    for _ in range(epochs):
        items = 0
        began = time.perf_counter()
        for inputs, _labels in loader:
            items += len(inputs)
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), items


def _model_rate(cfg: Any, datamodule: Any, quick: bool) -> float:
    """Samples/s the demo's network trains on: forward, cross-entropy, backward and an AdamW step per batch."""
    from hydra.utils import instantiate

    net = instantiate(cfg.model)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    inputs, labels = next(iter(datamodule.train_dataloader()))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(net(inputs), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # allocations and first-call work out of the timing
    seconds = []
    for _ in range(2 if quick else 10):
        began = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - began)
    return len(inputs) / statistics.median(seconds)


def _case(modality: str, root: Path, quick: bool, log: Any) -> dict[str, Any]:
    """One demo: its data and shards made under `root`, then every (format, workers) loader and the model."""
    from hydra.utils import instantiate

    from mmattn.data.shard_data import write_shards
    from mmattn.data.shards import read_info

    experiment = DEMOS[modality]
    data_dir, shards = root / "data", root / "shards"
    base = [*(QUICK_DATA if quick else []), f"data.shards={shards}"]
    files_dm = instantiate(_config(experiment, data_dir, base).data)
    files_dm.prepare_data()
    began = time.perf_counter()
    write_shards(files_dm, str(shards))
    convert_s = time.perf_counter() - began
    info = read_info(str(shards / "train"))
    item_bytes = info.num_bytes / info.num_items

    rates: dict[str, dict[str, Any]] = {}
    for data_format in ("files", "shards"):
        for workers in WORKERS:
            cfg = _config(experiment, data_dir, [*base, f"data.format={data_format}", f"data.num_workers={workers}"])
            datamodule = instantiate(cfg.data)
            datamodule.setup("fit")
            seconds, items = _epoch_rate(datamodule, 1 if quick else 3)
            rate = items / seconds
            rates[f"{data_format}/{workers}"] = {
                "samples_per_s": rate,
                "mb_per_s": rate * item_bytes / MB,
                "items": items,
                "seconds": seconds,
            }
            log(f"loader {modality} {data_format} workers={workers}: {rate:,.0f} samples/s ({items} items)")
    model_cfg = _config(experiment, data_dir, [*base, "data.num_workers=0"])
    model_dm = instantiate(model_cfg.data)
    model_dm.setup("fit")
    consumed = _model_rate(model_cfg, model_dm, quick)
    log(f"loader {modality}: the {experiment} model trains on {consumed:,.0f} samples/s")

    def rate_of(data_format: str, workers: int) -> float:
        return rates[f"{data_format}/{workers}"]["samples_per_s"]

    return {
        "experiment": experiment,
        "train_items": info.num_items,
        "encoded_bytes_per_item": item_bytes,
        "convert_s": convert_s,
        "loader": rates,
        "model_samples_per_s": consumed,
        "ratio": {
            **{f"shards/model workers={w}": rate_of("shards", w) / consumed for w in WORKERS},
            **{f"shards/files workers={w}": rate_of("shards", w) / rate_of("files", w) for w in WORKERS},
        },
    }


def bench_loader(args: Any, log: Any) -> dict[str, Any]:
    """Training-loader throughput from shards and from files, against the demo model's consumption, per modality."""
    cases = {}
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        for modality in DEMOS:
            cases[modality] = _case(modality, Path(tmp) / modality, args.quick, log)
    return {
        "what": (
            "median of 3 epochs of the demo's training loader (after a first one; persistent workers) from the data "
            "folder and from its shards, with 0/1/2 workers; model = median of 10 training steps (forward, backward, "
            "AdamW) of the demo's network on a batch of its loader"
        ),
        "cases": cases,
    }
