"""Audio-classification datamodules: Speech Commands v2, ESC-50, any labelled audio folder, the built-in DTMF demo.

Every module yields `(features [B, frames, mel_bins], labels)` batches to `mmattn.lit.ClassificationModule`. Features
are computed either per clip in the loader workers (`features_on="loader"`, the CPU default) or batched on the
training device after the transfer (`features_on="device"`, for GPUs), from the same `AudioFeatures` module.
"""

from __future__ import annotations

import os
import warnings
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmattn.data import ClassificationDataModule
from mmattn.data.shard_data import StreamedData
from mmattn.data.shards import FileSource, Record, RecordSource
from mmattn.data.skipping import collate_skipping

from .augment import WaveAugment
from .data import (
    AudioClipDataset,
    AudioDataLoader,
    Clip,
    audio_folder_splits,
    esc50_splits,
    speech_commands_splits,
)
from .dtmf import DTMF_CLASSES, make_dtmf
from .dtmf import GENERATOR_VERSION as DTMF_GENERATOR_VERSION
from .features import AST_MEAN, AST_STD, AudioFeatures, SpecAugment
from .io import AUDIO_EXTENSIONS, fix_length
from .shards import AudioRecordDecoder, clip_sources

SPEECH_COMMANDS_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
ESC50_URL = "https://github.com/karoldvl/ESC-50/archive/master.zip"


class _ClipFeatures(nn.Module):
    """Loader-side pipeline of one clip: waveform augmentation, features, SpecAugment (training only)."""

    def __init__(self, wave_aug: Callable[[Tensor], Tensor] | None, features: nn.Module | None, spec: nn.Module):
        super().__init__()
        self.wave_aug = wave_aug
        self.features = features
        self.spec = spec

    @torch.no_grad()
    def forward(self, wave: Tensor) -> Tensor:
        if self.wave_aug is not None:
            wave = self.wave_aug(wave)
        if self.features is None:
            return wave
        return self.spec(self.features(wave))


class _RawFeatures(nn.Module):
    """Un-normalised features of an `AudioFeatures` module (for measuring the statistics that normalise them)."""

    def __init__(self, features: AudioFeatures) -> None:
        super().__init__()
        self.features = features

    def forward(self, wave: Tensor) -> Tensor:
        return self.features.raw(wave)


class AudioClassificationDataModule(StreamedData, ClassificationDataModule):
    """Base audio datamodule: reading, fixed-length clips, augmentation and features, on top of
    `mmattn.data.ClassificationDataModule`'s loaders.

    Subclasses implement `_find_clips()`, returning the train/val[/test] clip lists, the class names and the
    background-noise files (for noise mixing; may be empty), and `shard_identity()`, the options that choose the
    clips (to be written to shards and read back with `format="shards"`; the noise files go into a "noise" split).

    Args:
        batch_size: Clips per batch (per process under DDP).
        num_workers: Loader worker processes (they decode, augment and, with `features_on="loader"`, featurise).
        pin_memory: Pin host memory (helps GPU training).
        persistent_workers: Keep workers alive between epochs (only when `num_workers > 0`).
        drop_last: Drop the last incomplete training batch (batch-wise Mixup needs equal, even batches).
        sample_rate: Rate every file is resampled to.
        clip_seconds: Clip length; longer files are cropped (random in training, centred in evaluation), shorter
            ones zero-padded.
        features: "fbank" (Kaldi-compatible, AST) or "melspec" (torchaudio MelSpectrogram).
        num_mel_bins: Mel filters.
        target_length: Frames per example (padded/cut); None keeps the clip's natural frame count.
        mean: Feature mean for normalisation (AST's AudioSet value by default; measure yours with
            `scripts/audio_stats.py`).
        std: Feature std for normalisation.
        features_on: "loader" (per clip in the workers) or "device" (batched after the transfer to the device).
        freq_mask: SpecAugment: widest frequency mask in bins (0 = off).
        time_mask: SpecAugment: widest time mask in frames (0 = off).
        num_freq_masks: SpecAugment frequency masks per clip.
        num_time_masks: SpecAugment time masks per clip.
        gain_db: Random gain range (low, high) in dB for training clips; None = off.
        time_shift: Largest random time shift as a fraction of the clip (0 = off).
        noise_prob: Probability of mixing background noise into a training clip (needs noise files).
        snr_db: SNR range (low, high) of that mix.
        skip_bad_files: Skip files that cannot be decoded (counted in a warning after each epoch) instead of failing.
        num_classes: Expected number of classes; checked against the data in `setup()`.
        format: "files" (the dataset's audio files) or "shards" (the shard folder `shards`, from `mmattn-shards`).
        shards: Shard folder or object-store URL, for format "shards".

    Raises:
        ValueError: On a bad option (named in the message).
    """

    def __init__(
        self,
        *,
        batch_size: int = 64,
        num_workers: int = 2,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        drop_last: bool = True,
        sample_rate: int = 16000,
        clip_seconds: float = 1.0,
        features: Literal["fbank", "melspec"] = "fbank",
        num_mel_bins: int = 128,
        target_length: int | None = None,
        mean: float = AST_MEAN,
        std: float = AST_STD,
        features_on: Literal["loader", "device"] = "loader",
        freq_mask: int = 0,
        time_mask: int = 0,
        num_freq_masks: int = 1,
        num_time_masks: int = 1,
        gain_db: Sequence[float] | None = None,
        time_shift: float = 0.0,
        noise_prob: float = 0.0,
        snr_db: Sequence[float] = (5.0, 20.0),
        skip_bad_files: bool = False,
        num_classes: int | None = None,
        format: str = "files",
        shards: str | Path | None = None,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers,
            drop_last=drop_last,
            num_classes=num_classes,
            format=format,
            shards=shards,
        )
        if clip_seconds <= 0:
            raise ValueError(f"clip_seconds must be > 0, got {clip_seconds}")
        if features_on not in ("loader", "device"):
            raise ValueError(f"features_on must be 'loader' or 'device', got {features_on!r}")
        self.sample_rate = sample_rate
        self.num_samples = round(sample_rate * clip_seconds)
        self.features = AudioFeatures(
            features,
            sample_rate=sample_rate,
            num_mel_bins=num_mel_bins,
            target_length=target_length,
            mean=mean,
            std=std,
        )
        if self.features.extract.num_frames(self.num_samples) < 1:
            raise ValueError(f"clip_seconds {clip_seconds} is shorter than one feature frame; use longer clips")
        self.target_length = self.features.num_frames(self.num_samples)
        self.num_mel_bins = num_mel_bins
        self.features_on = features_on
        self.spec_augment = SpecAugment(
            freq_mask, time_mask, num_freq_masks=num_freq_masks, num_time_masks=num_time_masks
        )
        self.wave_aug_options = dict(
            gain_db=None if gain_db is None else tuple(map(float, gain_db)),
            max_shift=float(time_shift),
            noise_prob=float(noise_prob),
            snr_db=tuple(map(float, snr_db)),
            sample_rate=sample_rate,
        )
        # Checked here, before any data is read, so a bad range fails at construction.
        WaveAugment(**{**self.wave_aug_options, "noise_prob": 0.0})
        self.skip_bad_files = skip_bad_files
        self.noise_files: list[Path | bytes] = []

    loader_class = AudioDataLoader
    shard_codec = "audio"
    # The dataset folder (set by every subclass); shard record keys are paths under it.
    root: Path
    collate_fn = collate_skipping
    # The files `load_inputs` reads (what mmattn-predict takes from a folder).
    extensions = AUDIO_EXTENSIONS
    # The names of a file in a JSON-lines manifest of mmattn-predict (NeMo's too).
    manifest_keys = ("audio", "audio_filepath")

    @abstractmethod
    def _find_clips(self) -> tuple[dict[str, list[Clip]], list[str], list[Path]]:
        """Return ({"train", "val"[, "test"]} -> clips, class names, background-noise files)."""

    def load_inputs(self, paths: Sequence[str | Path]) -> Tensor:
        """Audio files as the model sees them in evaluation: features [B, frames, mel_bins] of the centred clip.

        Files at another sample rate are resampled and clips of another length centre-cropped or padded, each with
        a warning naming the file.

        Raises:
            FileNotFoundError: A file does not exist.
            AudioDecodeError: soundfile cannot decode a file.
        """
        import soundfile as sf

        from .io import read_audio

        out = []
        for path in paths:
            wave = read_audio(path, self.sample_rate)
            rate = sf.info(str(path)).samplerate
            if rate != self.sample_rate:
                warnings.warn(f"{path} is at {rate} Hz; resampled to the model's {self.sample_rate} Hz", stacklevel=2)
            if wave.numel() != self.num_samples:
                have, want = wave.numel() / self.sample_rate, self.num_samples / self.sample_rate
                warnings.warn(f"{path} lasts {have:.2f} s; centred in the model's {want:g} s", stacklevel=2)
            with torch.no_grad():
                out.append(self.features(fix_length(wave, self.num_samples, mode="center")))
        return torch.stack(out)

    def _pipeline(self, train: bool) -> _ClipFeatures:
        wave_aug = None
        if train and (
            self.wave_aug_options["gain_db"] is not None
            or self.wave_aug_options["max_shift"] > 0
            or self.wave_aug_options["noise_prob"] > 0
        ):
            wave_aug = WaveAugment(noise_files=self.noise_files, **self.wave_aug_options)
        loader_side = self.features_on == "loader"
        # SpecAugment() without masks is the identity: evaluation, or masks applied on the device instead.
        spec = self.spec_augment if train and loader_side else SpecAugment()
        return _ClipFeatures(wave_aug, self.features if loader_side else None, spec)

    def _load(self) -> tuple[AudioClipDataset, AudioClipDataset, AudioClipDataset | None, list[str]]:
        splits, classes, noise_files = self._find_clips()
        if self.wave_aug_options["noise_prob"] > 0 and not noise_files:
            raise ValueError("data.noise_prob > 0 but this dataset has no background-noise files; set noise_prob=0")
        self.noise_files = list(noise_files)
        common = dict(sample_rate=self.sample_rate, num_samples=self.num_samples, skip_bad_files=self.skip_bad_files)
        train = AudioClipDataset(splits["train"], train=True, transform=self._pipeline(True), **common)
        val = AudioClipDataset(splits["val"], train=False, transform=self._pipeline(False), **common)
        test = splits.get("test")
        if test is not None:
            test = AudioClipDataset(test, train=False, transform=self._pipeline(False), **common)
        return train, val, test, classes

    def shard_sources(self) -> tuple[dict[str, list[RecordSource]], list[str]]:
        """Every split's clips (files as they are, windows of long recordings cut out) and, if the data has any, its
        background-noise recordings as the side split "noise", keyed by their path under the dataset folder."""
        splits, classes, noise_files = self._find_clips()
        root = self.root
        window = dict(sample_rate=self.sample_rate, num_samples=self.num_samples)
        sources = {split: clip_sources(clips, root, **window) for split, clips in splits.items()}
        if noise_files:
            sources["noise"] = [FileSource(Path(os.path.relpath(p, root)).as_posix(), -1, str(p)) for p in noise_files]
        return sources, classes

    def decode_record(self, train: bool) -> Callable[[Record], Any]:
        """A stored clip -> `(features or waveform, label)` through the split's pipeline, as from its file."""
        if train and self.format == "shards" and self.wave_aug_options["noise_prob"] > 0 and not self.noise_files:
            from mmattn.data.streaming import read_records

            records = read_records(str(self.shards), "noise", self)
            if not records:
                raise ValueError(
                    f"data.noise_prob > 0 but the shards at {self.shards} hold no background-noise recordings (their "
                    "data has none); set noise_prob=0"
                )
            self.noise_files = [record.data for record in records]
        return AudioRecordDecoder(
            sample_rate=self.sample_rate,
            num_samples=self.num_samples,
            train=train,
            transform=self._pipeline(train),
            skip_bad_files=self.skip_bad_files,
        )

    def feature_stats(self, max_clips: int | None = None) -> tuple[float, float]:
        """Mean and std of the un-normalised features of the training clips (centre crops, no augmentation).

        The values to set as `data.mean` / `data.std` (what `scripts/audio_stats.py` prints); padded frames count,
        as the model sees them.
        """
        splits, _, _ = self._find_clips()
        clips = splits["train"]
        if max_clips is not None and len(clips) > max_clips:
            # Evenly spaced, so a capped run still sees every class of a class-sorted list.
            clips = [clips[round(i * len(clips) / max_clips)] for i in range(max_clips)]
        dataset = AudioClipDataset(
            clips,
            sample_rate=self.sample_rate,
            num_samples=self.num_samples,
            train=False,
            transform=_ClipFeatures(None, _RawFeatures(self.features), SpecAugment()),
            skip_bad_files=self.skip_bad_files,
        )
        loader = AudioDataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate_skipping
        )
        total, total_sq, count = 0.0, 0.0, 0
        for feats, _ in loader:
            feats = feats.double()
            total += feats.sum().item()
            total_sq += feats.pow(2).sum().item()
            count += feats.numel()
        if not count:
            raise ValueError(f"{type(self).__name__}: no training clip could be read to measure feature statistics")
        mean = total / count
        return mean, max(total_sq / count - mean * mean, 0.0) ** 0.5

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With `features_on="device"`, turn the waveform batch into features (and SpecAugment them in training)."""
        if self.features_on != "device":
            return batch
        waves, labels = batch
        features = self.features.to(waves.device)
        with torch.no_grad():
            feats = features(waves)
            trainer = getattr(self, "trainer", None)
            if trainer is not None and trainer.training:
                feats = self.spec_augment.train()(feats)
        return feats, labels


class SpeechCommandsDataModule(AudioClassificationDataModule):
    """Speech Commands v2 (`root/<word>/<file>.wav`, `validation_list.txt`, `testing_list.txt`, `_background_noise_/`).

    Args:
        root: The folder holding the word folders and the two list files.
        protocol: "all" (every word a class: 35 in v2) or "12" (10 words + `_unknown_` + `_silence_`).
        silence_fraction: With protocol "12": `_silence_` clips cut from the background noise, as a share of a split.
        unknown_fraction: With protocol "12": cap `_unknown_` at this share of a split (None keeps all).
        download: Download and extract the 2.3 GB archive into `root` when the lists are missing.
        seed: Seed of the silence crops and the unknown subsampling.
        **kwargs: Options of `AudioClassificationDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        protocol: Literal["all", "12"] = "all",
        silence_fraction: float = 0.1,
        unknown_fraction: float | None = None,
        download: bool = False,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if protocol not in ("all", "12"):
            raise ValueError(f"protocol must be 'all' or '12', got {protocol!r}")
        self.root = Path(root).expanduser()
        self.protocol = protocol
        self.silence_fraction = silence_fraction
        self.unknown_fraction = unknown_fraction
        self.download = download
        self.seed = seed
        self.save_hyperparameters(logger=False)

    def prepare_data(self) -> None:
        """Download and extract Speech Commands v2 when asked and missing (once per node; not for shards)."""
        if self.download and self.format == "files" and not (self.root / "validation_list.txt").is_file():
            from torchvision.datasets.utils import download_and_extract_archive

            download_and_extract_archive(SPEECH_COMMANDS_URL, str(self.root), remove_finished=True)

    def shard_identity(self) -> dict[str, Any]:
        """Speech Commands and the protocol options; with protocol "12" also the seed and clip length that cut the
        `_silence_` windows and subsample `_unknown_`."""
        identity: dict[str, Any] = {"dataset": "speechcommands", "protocol": self.protocol}
        if self.protocol == "12":
            identity.update(
                silence_fraction=self.silence_fraction,
                unknown_fraction=self.unknown_fraction,
                seed=self.seed,
                sample_rate=self.sample_rate,
                num_samples=self.num_samples,
            )
        return identity

    def _find_clips(self) -> tuple[dict[str, list[Clip]], list[str], list[Path]]:
        return speech_commands_splits(
            self.root,
            protocol=self.protocol,
            silence_fraction=self.silence_fraction,
            unknown_fraction=self.unknown_fraction,
            seed=self.seed,
            clip_samples=self.num_samples,
            sample_rate=self.sample_rate,
        )


class DTMFDataModule(SpeechCommandsDataModule):
    """The built-in audio demo: DTMF keypad tones in noise (17 classes), generated once under `root/dtmf` as real
    16-bit WAV files in the Speech Commands layout, then read by `SpeechCommandsDataModule`.

    Args:
        root: Data directory; the dataset lives in `root/dtmf`.
        generate: Generate the data when missing; if False, a missing folder is an error.
        train_per_class: Generated training clips per class.
        val_per_class: Generated validation clips per class.
        test_per_class: Generated test clips per class.
        data_seed: Seed of the generated clips (`seed` is the loader's).
        gen_snr_db: SNR range of the tones against the background noise, in dB, at generation (`snr_db` is the
            augmentation's noise-mixing range).
        **kwargs: Options of `AudioClassificationDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        generate: bool = True,
        train_per_class: int = 250,
        val_per_class: int = 40,
        test_per_class: int = 40,
        data_seed: int = 0,
        gen_snr_db: Sequence[float] = (0.0, 20.0),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("num_classes", len(DTMF_CLASSES))
        super().__init__(Path(root).expanduser() / "dtmf", protocol="all", download=False, **kwargs)
        self.data_root = Path(root).expanduser()
        self.generate = generate
        self.gen_kwargs = dict(
            sample_rate=self.sample_rate,
            train_per_class=train_per_class,
            val_per_class=val_per_class,
            test_per_class=test_per_class,
            seed=data_seed,
            snr_db=tuple(map(float, gen_snr_db)),
        )
        self.save_hyperparameters(logger=False)

    def prepare_data(self) -> None:
        """Generate the demo set if it is missing (write-once and process-safe; not for shards)."""
        if self.generate and self.format == "files":
            make_dtmf(self.data_root, **self.gen_kwargs)

    def shard_identity(self) -> dict[str, Any]:
        """The generator's version and settings: they fix every clip."""
        return {"dataset": "dtmf", "generator": DTMF_GENERATOR_VERSION, **self.gen_kwargs}

    def _find_clips(self) -> tuple[dict[str, list[Clip]], list[str], list[Path]]:
        # prepare_data may have run in another process, or not at all; make_dtmf returns at once when the finished
        # tree is there and checks that it matches our settings.
        if self.generate:
            make_dtmf(self.data_root, **self.gen_kwargs)
        elif not self.root.is_dir():
            raise FileNotFoundError(f"DTMF demo data not found at {self.root}; pass data.generate=true to create it")
        return super()._find_clips()


class ESC50DataModule(AudioClassificationDataModule):
    """ESC-50 (`root/meta/esc50.csv`, `root/audio/*.wav`; 50 classes, 5 folds of 5 s clips at 44.1 kHz).

    Args:
        root: The `ESC-50-master` folder.
        test_fold: Fold used for testing (1-5); cross-validation runs each fold in turn.
        val_fold: Fold used for validation; None validates on the test fold (the paper protocol reports that).
        download: Download and extract the GitHub archive next to `root` when the metadata is missing.
        **kwargs: Options of `AudioClassificationDataModule`; `clip_seconds` defaults to 5 here.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        test_fold: int = 5,
        val_fold: int | None = 4,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("clip_seconds", 5.0)
        kwargs.setdefault("num_classes", 50)
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.test_fold = test_fold
        self.val_fold = val_fold
        self.download = download
        self.save_hyperparameters(logger=False)

    def prepare_data(self) -> None:
        """Download and extract ESC-50 when asked and missing (once per node; not for shards)."""
        if self.download and self.format == "files" and not (self.root / "meta" / "esc50.csv").is_file():
            from torchvision.datasets.utils import download_and_extract_archive

            download_and_extract_archive(ESC50_URL, str(self.root.parent), filename="ESC-50-master.zip")

    def shard_identity(self) -> dict[str, Any]:
        """ESC-50 and the folds held out."""
        return {"dataset": "esc50", "test_fold": self.test_fold, "val_fold": self.val_fold}

    def _find_clips(self) -> tuple[dict[str, list[Clip]], list[str], list[Path]]:
        splits, classes = esc50_splits(self.root, test_fold=self.test_fold, val_fold=self.val_fold)
        return splits, classes, []


class AudioFolderDataModule(AudioClassificationDataModule):
    """Any labelled audio folder: `root/{train,val[,test]}/<class>/<clip>` or `root/<class>/<clip>` split by seed.

    Args:
        root: Dataset folder.
        val_fraction: Share of each class held out for validation when `root` has no `train/` subfolder.
        seed: Seed of that split.
        noise_dir: Optional folder of background-noise recordings for `noise_prob` mixing.
        **kwargs: Options of `AudioClassificationDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        val_fraction: float = 0.1,
        seed: int = 0,
        noise_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root).expanduser()
        self.val_fraction = val_fraction
        self.seed = seed
        self.noise_dir = None if noise_dir is None else Path(noise_dir).expanduser()
        self.save_hyperparameters(logger=False)

    def shard_identity(self) -> dict[str, Any]:
        """An audio folder: the options that split it (the folder's own path may differ where shards are read)."""
        return {"dataset": "audiofolder", "val_fraction": self.val_fraction, "seed": self.seed}

    def _find_clips(self) -> tuple[dict[str, list[Clip]], list[str], list[Path]]:
        from .io import AUDIO_EXTENSIONS

        splits, classes = audio_folder_splits(self.root, val_fraction=self.val_fraction, seed=self.seed)
        noise: list[Path] = []
        if self.noise_dir is not None:
            if not self.noise_dir.is_dir():
                raise FileNotFoundError(f"data.noise_dir {self.noise_dir} is not a folder of noise recordings")
            noise = sorted(p for p in self.noise_dir.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS)
        return splits, classes, noise
