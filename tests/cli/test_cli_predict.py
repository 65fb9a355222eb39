"""mmattn-predict: every family over files, folders, manifests and text files into JSON lines, in input order, with
unreadable inputs stopping the run (named) or listed; the same output from two DDP processes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import DictConfig, open_dict
from PIL import Image

from mmattn.cli.predict import predict
from mmattn.data.predict import MANIFEST_KEYS, PredictInputs, expand_inputs


def _config(compose_cfg, tmp_path: Path, *overrides: str) -> DictConfig:
    cfg = compose_cfg("predict", [f"output={tmp_path / 'preds.jsonl'}", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    return cfg


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _photos(folder: Path, n: int = 7, broken: int | None = None) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (40 + i, 36, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    if broken is not None:
        paths[broken].write_bytes(paths[broken].read_bytes()[:60])
    (folder / "notes.txt").write_text("not an image: a folder's other files are left out\n")
    return paths


def test_a_classifier_predicts_a_folder_in_order(compose_cfg, trained_run, tmp_path: Path) -> None:
    ckpt = trained_run("vision") / "checkpoints" / "last.ckpt"
    photos = _photos(tmp_path / "photos", broken=3)
    cfg = _config(compose_cfg, tmp_path, f"ckpt_path={ckpt}", f"inputs={tmp_path / 'photos'}", "batch_size=3")
    with pytest.raises(ValueError, match=r"cannot read image .*03\.png \(.*\); pass skip_bad_files=true to list"):
        predict(cfg)
    cfg.skip_bad_files = True
    cfg.options = {"top_k": 2}
    lines = _lines(predict(cfg))
    assert [line["input"] for line in lines] == [str(p) for p in photos]
    assert "error" in lines[3] and "labels" not in lines[3]
    good = [line for i, line in enumerate(lines) if i != 3]
    assert all(len(line["labels"]) == 2 and line["probs"][0] >= line["probs"][1] for line in good)
    import mmattn

    expected = mmattn.classify(ckpt, [p for i, p in enumerate(photos) if i != 3], top_k=2)
    assert [line["labels"] for line in good] == [row["labels"] for row in expected]


def test_text_models_predict_lines_and_manifests(compose_cfg, trained_run, tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("jump twice\nwalk left\n")
    (tmp_path / "more.jsonl").write_text(json.dumps({"text": "run"}) + "\n")
    ckpt = trained_run("translation") / "checkpoints" / "last.ckpt"
    inputs = f"inputs=[{tmp_path / 'src.txt'},{tmp_path / 'more.jsonl'}]"
    lines = _lines(predict(_config(compose_cfg, tmp_path, f"ckpt_path={ckpt}", inputs, "+options.beam_size=1")))
    import mmattn

    expected = mmattn.translate(ckpt, ["jump twice", "walk left", "run"])
    assert lines == [{"input": s, "output": o} for s, o in zip(["jump twice", "walk left", "run"], expected)]

    lm = trained_run("lm") / "checkpoints" / "last.ckpt"
    overrides = [f"ckpt_path={lm}", f"inputs={tmp_path / 'src.txt'}", "batch_size=1", "+options.num_samples=2"]
    first = _lines(predict(_config(compose_cfg, tmp_path, *overrides, "+options.max_new_tokens=5")))
    again = _lines(predict(_config(compose_cfg, tmp_path, *overrides, "+options.max_new_tokens=5", "batch_size=2")))
    assert first == again  # prompt i draws from seed + i: batching does not change the samples
    assert [len(line["samples"]) for line in first] == [2, 2] and first[0]["samples"][0].startswith("jump twice")
    with pytest.raises(ValueError, match=r"unknown sampling options \['beam_size'\]"):
        predict(_config(compose_cfg, tmp_path, *overrides, "+options.beam_size=2"))


def test_speech_predicts_a_manifest_and_lists_unreadable_clips(compose_cfg, trained_run, data_dir, tmp_path) -> None:
    ckpt = trained_run("speech") / "checkpoints" / "last.ckpt"  # also writes the spoken digits into data_dir
    clips = sorted((data_dir / "spoken_digits" / "test").glob("*.flac"))[:2]
    wave, rate = sf.read(clips[0])
    sf.write(tmp_path / "a.wav", wave, rate)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    rows = [{"audio": "a.wav"}, {"audio_filepath": str(clips[1])}, {"audio": "bad.wav"}]
    (tmp_path / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = [f"ckpt_path={ckpt}", f"inputs={tmp_path / 'clips.jsonl'}", "skip_bad_files=true"]
    lines = _lines(predict(_config(compose_cfg, tmp_path, *overrides)))
    assert [line["input"] for line in lines] == [str(tmp_path / "a.wav"), str(clips[1]), str(tmp_path / "bad.wav")]
    assert "output" in lines[0] and "output" in lines[1] and "bad.wav" in lines[2]["error"]


def test_inputs_are_checked(tmp_path: Path) -> None:
    spec = PredictInputs("files", read=str, collate=list, extensions=(".png",), manifest_keys=("image",))
    with pytest.raises(FileNotFoundError, match=r"input .*nope does not exist"):
        expand_inputs(tmp_path / "nope", spec)
    with pytest.raises(ValueError, match=r"no input items"):
        expand_inputs(tmp_path, spec)
    (tmp_path / "m.jsonl").write_text('{"img": "a.png"}\n')
    with pytest.raises(ValueError, match=r"m.jsonl, line 1: not a JSON object with one of the keys .*'image'"):
        expand_inputs(tmp_path / "m.jsonl", spec)
    with pytest.raises(ValueError, match=r"is a folder; this model reads text"):
        expand_inputs(tmp_path, PredictInputs("text", read=str, collate=list))
    assert MANIFEST_KEYS["files"] == ("path", "file")  # the core's own names; readers add theirs


@pytest.mark.slow
def test_two_ddp_processes_write_each_input_once_in_order(
    run_cli, compose_cfg, trained_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 7 inputs over 2 ranks: the DistributedSampler pads with a repeated one, which must be written once.
    _photos(tmp_path / "photos")
    ckpt = trained_run("vision") / "checkpoints" / "last.ckpt"
    args = [f"ckpt_path={ckpt}", "inputs=photos", "batch_size=2"]
    # One process (in this one) for comparison; the two ranks are real processes.
    monkeypatch.chdir(tmp_path)
    one = predict(_config(compose_cfg, tmp_path, *args))
    two = run_cli("mmattn-predict", *args, "output=two.jsonl", "trainer=ddp_cpu", cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _lines(one), _lines(tmp_path / "two.jsonl")
    assert [line["input"] for line in b] == [line["input"] for line in a] and len(b) == 7
    assert [line["labels"] for line in b] == [line["labels"] for line in a]
    assert np.allclose([line["probs"] for line in b], [line["probs"] for line in a], atol=1e-6)
    assert not list(tmp_path.glob(".*.part"))

    # An unreadable input under DDP: both ranks stop with one line (none waits for the other), nothing is written.
    (tmp_path / "photos" / "03.png").write_bytes(b"not a png")
    bad = run_cli("mmattn-predict", *args, "output=bad.jsonl", "trainer=ddp_cpu", cwd=tmp_path)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr[-3000:]
    assert "mmattn-predict: error: cannot read image photos/03.png" in bad.stderr
    assert not (tmp_path / "bad.jsonl").exists() and not list(tmp_path.glob(".*.part"))
