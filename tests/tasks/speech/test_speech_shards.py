"""Speech data written to shards and read back by index: the same utterances, transcripts, lengths, waveforms and
token-budget batches (order, members, augmentation) as from the files, for the spoken-digits demo and the
LibriSpeech layout; shards of other data and a damaged metadata file stop with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmattn.data.shard_data import write_shards
from mmattn.data.shards import ShardError, read_info
from mmattn.tasks.speech import LibriSpeechDataModule, SpokenDigitsDataModule

# The sizes of TINY_SPEECH: the demo is generated once per session into the shared data directory.
COUNTS = {"train": 24, "valid": 6, "test": 6}
# A gain draw per training clip (seeded from the seed, the epoch and the index) and a duration limit that drops the
# longest training clips: both must act alike on files and shards.
OPTIONS = dict(vocab_size=64, min_frequency=1, max_frames=800, max_duration=2.6, gain_db=[-6.0, 6.0], seed=3)


def _batches(loader, epoch: int) -> list[dict]:
    loader.batch_sampler.set_epoch(epoch)
    return list(loader)


def _same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x["ref"] == y["ref"] and torch.equal(x["tgt"], y["tgt"])
        assert torch.equal(x["src"]["audio"], y["src"]["audio"])
        assert torch.equal(x["src"]["audio_lengths"], y["src"]["audio_lengths"])


def test_spoken_digits_from_shards_equal_spoken_digits_from_files(data_dir: Path, tmp_path: Path) -> None:
    files = SpokenDigitsDataModule(data_dir, counts=COUNTS, tokenizer_dir=tmp_path / "tok_files", **OPTIONS)
    files.prepare_sources()
    written = {s.split: s.num_items for s in write_shards(files, str(tmp_path / "shards"))}
    assert written == {"train": 24, "val": 6, "test": 6}  # every clip; the duration limit applies when read
    shards = SpokenDigitsDataModule(
        tmp_path / "elsewhere",
        counts=COUNTS,
        tokenizer_dir=tmp_path / "tok_shards",
        format="shards",
        shards=tmp_path / "shards",
        **OPTIONS,
    )
    for dm in (files, shards):
        dm.prepare_data()
        dm.setup("fit")
    assert not (tmp_path / "elsewhere").exists()  # nothing generated where the shards are read
    assert shards.tokenizer.to_dict() == files.tokenizer.to_dict()  # trained on the same transcripts
    assert 0 < len(shards.datasets["train"]) < 24
    for split in ("train", "val", "test"):
        a, b = files.datasets[split], shards.datasets[split]
        assert [u.id for u in a.utterances] == [u.id for u in b.utterances]
        assert a.lengths() == b.lengths() and a.targets == b.targets and a.refs == b.refs
    for i in range(6):
        x, y = files.datasets["test"][i], shards.datasets["test"][i]
        assert torch.equal(x[0], y[0]) and x[1:] == y[1:]
    # The same token-budget batches in every epoch, with the same gain drawn for every clip.
    for epoch in (0, 1):
        _same_batches(_batches(files.train_dataloader(), epoch), _batches(shards.train_dataloader(), epoch))
    _same_batches(list(files.val_dataloader()), list(shards.val_dataloader()))

    info = read_info(str(tmp_path / "shards" / "train"))
    assert (info.codec, info.order, info.classes) == ("speech", "source", [])
    items = [json.loads(line) for line in (tmp_path / "shards" / "train" / "items.jsonl").read_text().splitlines()]
    assert items[0] == {
        "key": "train/train-00000.flac",
        "id": "train-00000",
        "duration": files.read_split("train", None)[0][0].duration,
        "text": files.read_split("train", None)[0][0].text,
    }
    flac = sum(p.stat().st_size for p in (data_dir / "spoken_digits" / "train").glob("*.flac"))
    assert info.num_bytes == flac  # the files' bytes as they are

    other = SpokenDigitsDataModule(
        tmp_path, counts={**COUNTS, "train": 30}, format="shards", shards=tmp_path / "shards", tokenizer_dir=None
    )
    with pytest.raises(ShardError, match=r"counts is \{.*'train': 24.*\} in the shards but \{.*'train': 30"):
        other.setup()


def test_librispeech_from_shards_and_what_stops_it(tmp_path: Path, librispeech) -> None:
    librispeech(tmp_path / "LibriSpeech")
    options = dict(vocab_size=40, min_frequency=1, tokenizer_dir=None, max_frames=400, max_duration=2.0)
    files = LibriSpeechDataModule(tmp_path, **options)
    write_shards(files, str(tmp_path / "shards"))
    keys = [json.loads(line)["key"] for line in (tmp_path / "shards" / "train" / "items.jsonl").open()]
    assert keys[0] == "train-clean-100/19/198/19-198-0000.flac" and len(keys) == 6
    shards = LibriSpeechDataModule(tmp_path / "elsewhere", format="shards", shards=tmp_path / "shards", **options)
    files.setup()
    shards.setup()
    for split in ("train", "val", "test"):
        assert files.datasets[split].lengths() == shards.datasets[split].lengths()
        assert all(torch.equal(a[0], b[0]) for a, b in zip(files.datasets[split], shards.datasets[split]))
    whole = _batches(files.train_dataloader(), 1)
    _same_batches(whole, _batches(shards.train_dataloader(), 1))
    # A loader worker opens the shards itself; a loader resumed after a batch continues with the files' next ones.
    workers = LibriSpeechDataModule(tmp_path, format="shards", shards=tmp_path / "shards", num_workers=1, **options)
    workers.setup()
    workers.datasets["train"][0]  # litdata's reader opened here first: the forked worker opens its own
    loader = workers.train_dataloader()
    loader.batch_sampler.set_epoch(1)
    batches = iter(loader)
    _same_batches(whole[:1], [next(batches)])
    state = loader.state_dict()
    resumed = shards.train_dataloader()
    resumed.load_state_dict(state)
    _same_batches(whole[1:], _batches(resumed, 1))

    no_test = LibriSpeechDataModule(tmp_path, format="shards", shards=tmp_path / "shards", test_subset=None, **options)
    with pytest.raises(ShardError, match="test_subset is 'test-clean' in the shards but None in the config"):
        no_test.setup()
    with open(tmp_path / "shards" / "val" / "items.jsonl", "r+b") as f:
        f.write(b'{"key": "x')  # another transcript, the same size
    again = LibriSpeechDataModule(tmp_path, format="shards", shards=tmp_path / "shards", **options)
    with pytest.raises(ShardError, match=r"val/items.jsonl differs from the file written \(its SHA-256 does not"):
        again.setup()
    (tmp_path / "shards" / "val" / "items.jsonl").unlink()
    with pytest.raises(ShardError, match=r"val/items.jsonl is missing \(its mmattn.json lists per-item metadata\)"):
        again.setup()
