"""Parallel text written to shards and read back: the same pairs through the same tokenizer and length filter, the
same token-budget batches in every epoch, for the SCAN demo and a parallel-text folder without a test split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmattn.data.shard_data import write_shards
from mmattn.data.shards import ShardError, read_info
from mmattn.data.streaming import read_records
from mmattn.tasks.translation import SCANDataModule, TranslationDataModule


def _epoch(loader, epoch: int) -> tuple[list[list[int]], list[dict]]:
    """The epoch's batches of indices, and its first three batches (collated)."""
    loader.batch_sampler.set_epoch(epoch)
    batches = iter(loader)
    indices = list(loader.batch_sampler)
    return indices, [next(batches) for _ in range(min(3, len(indices)))]


def _same_data(files: TranslationDataModule, shards: TranslationDataModule) -> None:
    assert shards.tokenizer.to_dict() == files.tokenizer.to_dict()
    for split in ("train", "val", "test"):
        a, b = files.datasets[split], shards.datasets[split]
        assert (a.src, a.tgt, a.refs) == (b.src, b.tgt, b.refs), split
        assert a.lengths() == b.lengths()
    assert (files.datasets["test"] is files.datasets["val"]) == (shards.datasets["test"] is shards.datasets["val"])
    for epoch in (0, 1):
        (ours, our_batches), (theirs, their_batches) = (_epoch(dm.train_dataloader(), epoch) for dm in (files, shards))
        assert ours == theirs and len(ours) > 1
        for x, y in zip(our_batches, their_batches):
            assert torch.equal(x["src"], y["src"]) and torch.equal(x["tgt"], y["tgt"]) and x["ref"] == y["ref"]


def test_scan_from_shards_equals_scan_from_files(data_dir: Path, tmp_path: Path) -> None:
    options = dict(vocab_size=128, min_frequency=1, max_tokens=2048, max_len=24, seed=5)
    files = SCANDataModule(data_dir, tokenizer_dir=tmp_path / "tok_files", **options)
    files.prepare_sources()
    written = {s.split: s.num_items for s in write_shards(files, str(tmp_path / "shards"))}
    assert written == {"train": 15892, "val": 836, "test": 4182}  # every pair; max_len applies when read
    shards = SCANDataModule(
        tmp_path / "elsewhere",
        tokenizer_dir=tmp_path / "tok_shards",
        format="shards",
        shards=tmp_path / "shards",
        **options,
    )
    for dm in (files, shards):
        dm.prepare_data()
        dm.setup()
    assert not (tmp_path / "elsewhere").exists()
    assert len(shards.datasets["train"]) < 15892  # the long pairs filtered alike
    _same_data(files, shards)
    info = read_info(str(tmp_path / "shards" / "train"))
    assert (info.codec, info.order, info.identity["split"]) == ("parallel_text", "source", "simple")
    first = read_records(str(tmp_path / "shards"), "test", shards)[0]
    lines = [(data_dir / "scan_simple" / f"test.{lang}").read_text().splitlines()[0] for lang in ("cmd", "act")]
    assert first.key == "test:1" and first.data == "\n".join(lines).encode()
    other = SCANDataModule(tmp_path, format="shards", shards=tmp_path / "shards", split="length", tokenizer_dir=None)
    with pytest.raises(ShardError, match="split is 'simple' in the shards but 'length' in the config"):
        other.setup()


def test_parallel_text_without_a_test_split(tmp_path: Path) -> None:
    src = ["ein haus", "", "zwei katzen", " ".join(["wort"] * 40), "drei hunde", "vier  bäume\r"] * 5
    tgt = ["a house", "nothing", "two cats", "word", "three dogs", "four trees"] * 5
    for split in ("train", "valid"):
        (tmp_path / "corpus").mkdir(exist_ok=True)
        (tmp_path / "corpus" / f"{split}.de").write_text("".join(f"{line}\n" for line in src), encoding="utf-8")
        (tmp_path / "corpus" / f"{split}.en").write_text("".join(f"{line}\n" for line in tgt), encoding="utf-8")
    options = dict(src_lang="de", tgt_lang="en", vocab_size=64, min_frequency=1, max_len=12, max_tokens=48)
    files = TranslationDataModule(tmp_path / "corpus", **options)
    assert {s.split for s in write_shards(files, str(tmp_path / "shards"))} == {"train", "val"}
    shards = TranslationDataModule(tmp_path / "nowhere", format="shards", shards=tmp_path / "shards", **options)
    files.setup()
    shards.setup()
    _same_data(files, shards)
    assert len(shards.datasets["train"]) == 20  # the empty and the 40-word pairs dropped, as from the files
    swapped = TranslationDataModule(
        tmp_path, format="shards", shards=tmp_path / "shards", **{**options, "src_lang": "en"}
    )
    with pytest.raises(ShardError, match="src_lang is 'de' in the shards but 'en' in the config"):
        swapped.setup()
