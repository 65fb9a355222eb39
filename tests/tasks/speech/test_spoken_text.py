"""The clap demo's data: spoken digit strings with their text, in fixed-size batches with transcript match ids."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from mmattn.tasks.speech import SpeechFrontEnd, SpokenTextDataModule
from mmattn.tasks.text.bpe import EOS_ID, PAD_ID, UNK_ID

# One digit a clip: ten possible transcripts, so 24 training clips repeat some (the match ids have work to do).
COUNTS = {"train": 24, "valid": 10, "test": 10}


def _module(root: Path, **kw) -> SpokenTextDataModule:
    args = dict(
        counts=COUNTS,
        min_digits=1,
        max_digits=2,
        backend="dtmf",  # the fast fallback of the speech tests; the datamodule never looks at the sound
        tokenizer_dir=root / "tok",
        vocab_size=64,
        min_frequency=1,
        batch_size=8,
    )
    return SpokenTextDataModule(root, **{**args, **kw})


@pytest.fixture(scope="module")
def dm(tmp_path_factory: pytest.TempPathFactory) -> SpokenTextDataModule:
    module = _module(tmp_path_factory.mktemp("data"))
    module.prepare_data()
    module.setup("fit")
    return module


def test_batches_hold_padded_waves_text_ids_and_match_ids(dm: SpokenTextDataModule) -> None:
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and all(len(b["match"]) == 8 for b in batches)
    batch = batches[0]
    assert set(batch) == {"audio", "text", "match"} and set(batch["audio"]) == {"audio", "audio_lengths"}
    audio, lengths = batch["audio"]["audio"], batch["audio"]["audio_lengths"]
    assert audio.dtype == torch.float32 and audio.ndim == 2 and lengths.dtype == torch.long
    assert lengths.shape == (8,) and int(lengths.max()) == audio.shape[1]
    for row, n in zip(audio, lengths.tolist()):
        assert (row[n:] == 0).all()
    text, match = batch["text"], batch["match"]
    assert text.dtype == torch.long and text.shape[0] == 8 and match.dtype == torch.long and match.shape == (8,)
    ends = text.gather(1, ((text != PAD_ID).sum(1) - 1)[:, None])
    assert (ends == EOS_ID).all()
    # The speech front end takes the audio part as it is.
    front = SpeechFrontEnd(dim=16, num_mel_bins=40, sample_rate=16000)
    tokens, mask = front.tokens_and_mask(batch["audio"])
    assert tokens.shape[:2] == mask.shape and tokens.shape[0] == 8 and not mask[:, 0].any()


def test_match_ids_are_equal_exactly_for_equal_transcripts(dm: SpokenTextDataModule) -> None:
    for split in ("train", "val", "test"):
        data = dm.datasets[split]
        assert [data.texts[m] for m in data.match] == data.refs
    assert len(set(dm.datasets["train"].refs)) < COUNTS["train"]  # some transcripts repeat
    texts, matches = [], []
    for batch in dm.train_dataloader():
        texts += dm.tokenizer.decode_batch(batch["text"])
        matches += batch["match"].tolist()
    for i in range(len(texts)):
        for j in range(len(texts)):
            assert (texts[i] == texts[j]) == (matches[i] == matches[j]), (texts[i], texts[j])


def test_eval_order_is_fixed_and_keeps_every_clip(dm: SpokenTextDataModule) -> None:
    first = [b["match"].tolist() for b in dm.val_dataloader()]
    assert first == [b["match"].tolist() for b in dm.val_dataloader()]
    assert sum(map(len, first)) == COUNTS["valid"]
    assert [m for b in first for m in b] == dm.datasets["val"].match


def test_tokenizer_round_trip_and_text_queries(dm: SpokenTextDataModule, tmp_path: Path) -> None:
    data = dm.datasets["train"]
    queries = dm.encode_texts(["  Three   SEVEN ", *data.texts[:2]])
    assert queries.dtype == torch.long and queries.shape[0] == 3
    assert dm.tokenizer.decode_batch(queries) == ["three seven", *data.texts[:2]]
    batch = next(iter(dm.val_dataloader()))
    row = batch["text"][0]
    want = dm.encode_texts([dm.tokenizer.decode(row)])[0]
    assert torch.equal(row[: len(want)], want) and dm.pad_id == PAD_ID
    # A resumed run loads the saved tokenizer instead of training another.
    again = _module(dm.data_root.parent)
    again.setup("fit")
    assert again.tokenizer == dm.tokenizer


def test_characters_outside_the_tokenizer_are_counted_not_refused(dm: SpokenTextDataModule, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="mmattn.tasks.text.encode"):
        ids = dm.encode_texts(["three ☃ seven", "one"])
    assert (ids == UNK_ID).sum() == 1
    assert "1 of 2 text(s) hold characters outside the tokenizer's vocabulary" in caplog.text
    with pytest.raises(ValueError, match="non-empty list of strings"):
        dm.encode_texts("three")
    with pytest.raises(RuntimeError, match="setup"):
        SpokenTextDataModule(dm.data_root.parent, backend="dtmf").encode_texts(["one"])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        SpokenTextDataModule(dm.data_root.parent, batch_size=0)


class _Trainer:
    """The two attributes the loaders read from a Lightning trainer."""

    def __init__(self, world_size: int, global_rank: int) -> None:
        self.world_size, self.global_rank = world_size, global_rank


def test_each_rank_takes_its_own_share(dm: SpokenTextDataModule) -> None:
    seen = []
    for rank in (0, 1):
        dm.trainer = _Trainer(2, rank)
        try:
            train = [m for b in dm.train_dataloader() for m in b["audio"]["audio_lengths"].tolist()]
            val = list(dm.val_dataloader())
        finally:
            dm.trainer = None
        assert len(train) == 8 and sum(len(b["match"]) for b in val) == COUNTS["valid"] // 2
        seen.append(val)
    ranks = [[m for b in val for m in b["match"].tolist()] for val in seen]
    assert sorted(ranks[0] + ranks[1]) == sorted(dm.datasets["val"].match)
