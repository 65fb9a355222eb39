"""Errors a user can act on end the console scripts with one line; bugs and --debug keep the traceback."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import DictConfig, open_dict
from PIL import Image

from mmattn.cli.errors import user_message
from mmattn.cli.train import train


def _image_folder(root: Path, truncate: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    if truncate:
        data = (root / truncate).read_bytes()
        (root / truncate).write_bytes(data[: len(data) // 2])
    return root


def _message(cfg: DictConfig) -> str:
    """The one line a console script would print for the error `train(cfg)` raises."""
    with pytest.raises(Exception) as caught:
        train(cfg)
    message = user_message(caught.value)
    assert message is not None, f"{type(caught.value).__name__} would print a traceback: {caught.value}"
    return message


TINY_FOLDER = ["data.img_size=16", "data.batch_size=4", "data.num_workers=0", "model=vit_demo", "model.patch_size=8"]


@pytest.fixture
def make_run(compose_cfg, env_data_dir: Path, tmp_path: Path) -> Callable[..., DictConfig]:
    """Train configs of one tiny CPU epoch whose run directory is under tmp_path (any data and model options)."""

    def make(*overrides: str) -> DictConfig:
        cfg = compose_cfg("train", ["trainer.max_epochs=1", "+trainer.limit_train_batches=1", *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
            cfg.paths.log_dir = str(tmp_path / "logs")
        return cfg

    return make


def test_data_errors_print_one_line_naming_the_file(make_run: Callable[..., DictConfig], tmp_path: Path) -> None:
    make_cfg = make_run
    missing = tmp_path / "nowhere"
    cfg = make_cfg("data=imagefolder", f"data.root={missing}", "data.num_classes=2", *TINY_FOLDER)
    assert f"no image folder at {missing}" in _message(cfg)

    folder = _image_folder(tmp_path / "img")
    cfg = make_cfg("data=imagefolder", f"data.root={folder}", "data.num_classes=3", *TINY_FOLDER)
    assert "num_classes is 3 but the data has 2 classes" in _message(cfg)

    text = tmp_path / "text"
    text.mkdir()
    (text / "a.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    cfg = make_cfg("data=text_folder", f"data.root={text}", "model=gpt_demo", "module=language_model")
    assert f"{text / 'a.txt'} is not valid UTF-8" in _message(cfg)

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.fr").write_text("un\ndeux\ntrois\n")
    (corpus / "train.en").write_text("one\ntwo\n")
    for split in ("valid", "test"):
        (corpus / f"{split}.fr").write_text("un\n")
        (corpus / f"{split}.en").write_text("one\n")
    parallel = ["data=parallel_text", f"data.root={corpus}", "data.src_lang=fr", "data.tgt_lang=en"]
    cfg = make_cfg(*parallel, "model=transformer_demo", "module=seq2seq", "trainer.use_distributed_sampler=false")
    message = _message(cfg)
    assert "train.fr" in message and "train.en" in message and "\n" not in message

    clips = tmp_path / "clips"
    for name in ("yes", "no"):
        (clips / name).mkdir(parents=True)
        for i in range(3):
            sf.write(clips / name / f"{i}.wav", np.zeros(1600, dtype=np.float32), 16000)
    (clips / "no" / "2.wav").write_bytes(b"RIFF....WAVEjunk")
    audio = ["data=audiofolder", f"data.root={clips}", "data.num_classes=2", "data.num_workers=0", "data.batch_size=4"]
    cfg = make_cfg(*audio, "model=ast_demo", "data.val_fraction=0.34")
    assert "2.wav" in _message(cfg)


def test_model_errors_name_the_config_key(make_cfg: Callable[..., DictConfig]) -> None:
    # make_cfg: the tiny shapes run of the shared test constants (model.dim=32).
    assert (
        _message(make_cfg("model.num_heads=5"))
        == "model (mmattn.tasks.vision.vit.ViT): num_heads (5) must divide dim (32); "
        "choose num_heads in [1, 2, 4, 8, 16, 32]"
    )


def test_bugs_keep_their_traceback() -> None:
    from mmattn.nn import MultiHeadAttention

    with pytest.raises(RuntimeError) as caught:
        MultiHeadAttention(8, 2)(torch.zeros(1, 2, 5))  # a shape error inside torch, met in our code's forward
    assert user_message(caught.value) is None
    with pytest.raises(RuntimeError) as caught:
        torch.nn.functional.linear(torch.zeros(2, 3), torch.zeros(4, 5))
    assert user_message(caught.value) is None


@pytest.mark.slow
def test_console_scripts_print_one_line_or_the_traceback_with_debug(run_cli, trained_run, tmp_path: Path) -> None:
    folder = _image_folder(tmp_path / "img", truncate="a/3.png")
    args = ["data=imagefolder", "data.num_classes=2", *TINY_FOLDER, "data.num_workers=1", "trainer.max_epochs=1"]
    # A checkpoint whose stored data config would overwrite a file: one line naming the key, the file untouched.
    victim = tmp_path / "precious.txt"
    victim.write_text("keep\n")
    checkpoint = torch.load(trained_run("vision") / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["data"] = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    torch.save(checkpoint, tmp_path / "crafted.ckpt")
    (tmp_path / "debug").mkdir()
    # Three independent processes at once (each mostly start-up), each in its own directory for its own run folder.
    with ThreadPoolExecutor(3) as pool:
        plain = pool.submit(run_cli, "mmattn-train", *args, "data.root=img", cwd=tmp_path)
        debug = pool.submit(run_cli, "mmattn-train", *args, f"data.root={folder}", "--debug", cwd=tmp_path / "debug")
        crafted = pool.submit(run_cli, "mmattn-eval", f"ckpt_path={tmp_path / 'crafted.ckpt'}", cwd=tmp_path / "debug")
    result = plain.result()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    # The error comes from a DataLoader worker: the line still names the file and the way to skip such files.
    assert result.stderr.splitlines()[-1] == (
        f"mmattn-train: error: cannot read image img{os.sep}a{os.sep}3.png (image file is truncated); replace or "
        "delete it, or set data.skip_bad_files=true to skip unreadable files (counted in a warning after each epoch)"
    )
    debug = debug.result()
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "ImageDecodeError" in debug.stderr and (folder / "a" / "3.png").exists()

    result = crafted.result()
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1].startswith("mmattn-eval: error: ")
    assert "crafted.ckpt: data names 'builtins.open', from package 'builtins', which is not trusted" in result.stderr
    assert victim.read_text() == "keep\n"
