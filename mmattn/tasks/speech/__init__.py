"""Speech adapter: audio -> text on the shared core. The speech front end (the audio adapter's features + conv
subsampling) feeds `mmattn.models.EncoderDecoder`; manifests, LibriSpeech and the spoken-digits demo feed
`mmattn.lit.Seq2SeqModule` with the text adapter's tokenizer."""

from .corpus import Utterance, read_librispeech, read_manifest, write_manifest
from .datamodule import (
    LibriSpeechDataModule,
    ManifestDataModule,
    SpeechDataModule,
    SpeechDataset,
    SpokenDigitsDataModule,
    collate_speech,
)
from .digits import DIGIT_WORDS, digits_to_words, espeak_available, make_spoken_digits
from .frontend import ConvSubsampling, SpeechFrontEnd, collate_audio

__all__ = [
    "DIGIT_WORDS",
    "ConvSubsampling",
    "LibriSpeechDataModule",
    "ManifestDataModule",
    "SpeechDataModule",
    "SpeechDataset",
    "SpeechFrontEnd",
    "SpokenDigitsDataModule",
    "Utterance",
    "collate_audio",
    "collate_speech",
    "digits_to_words",
    "espeak_available",
    "make_spoken_digits",
    "read_librispeech",
    "read_manifest",
    "write_manifest",
]
