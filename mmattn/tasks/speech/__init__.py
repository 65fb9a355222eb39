"""Speech adapter: audio -> text on the shared core. The speech front end (the audio adapter's features + conv
subsampling) feeds `mmattn.models.EncoderDecoder`; manifests, LibriSpeech and the spoken-digits demo feed
`mmattn.lit.Seq2SeqModule` with the text adapter's tokenizer; the same clips paired with their text feed a dual
encoder (`SpokenTextDataModule`)."""

from .corpus import Utterance, read_librispeech, read_manifest, write_manifest
from .datamodule import SpeechDataModule, SpeechDataset, collate_speech
from .datamodules import LibriSpeechDataModule, ManifestDataModule, SpokenDigitsDataModule
from .digits import DIGIT_WORDS, digits_to_words, espeak_available, make_spoken_digits
from .frontend import ConvSubsampling, SpeechFrontEnd, collate_audio
from .spoken_text import SpokenTextDataModule, SpokenTextDataset, collate_spoken_text

__all__ = [
    "DIGIT_WORDS",
    "ConvSubsampling",
    "LibriSpeechDataModule",
    "ManifestDataModule",
    "SpeechDataModule",
    "SpeechDataset",
    "SpeechFrontEnd",
    "SpokenDigitsDataModule",
    "SpokenTextDataModule",
    "SpokenTextDataset",
    "Utterance",
    "collate_audio",
    "collate_speech",
    "collate_spoken_text",
    "digits_to_words",
    "espeak_available",
    "make_spoken_digits",
    "read_librispeech",
    "read_manifest",
    "write_manifest",
]
