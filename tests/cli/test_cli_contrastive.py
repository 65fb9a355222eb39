"""The contrastive family through the CLI: mmattn-train experiment=clap_demo (the shared tiny run), mmattn-eval and
mmattn-viz what=attention on its checkpoint, retrieval and prediction from files and texts, and the tokenizer check."""

from __future__ import annotations

import json

import pytest
import torch
from mmattn_testing import TINY_CLAP, compose_config, is_picture
from omegaconf import open_dict

import mmattn
from mmattn.lit import ContrastiveModule

DIRECTIONS = (("audio", "text"), ("text", "audio"))


def _recall_keys(stage: str) -> set[str]:
    return {f"{stage}/{a}_to_{b}_r{k}" for a, b in DIRECTIONS for k in (1, 5, 10)}


@pytest.mark.slow
def test_clap_demo_trains_evaluates_and_draws_its_similarity_matrix(trained_run, compose_cfg, tmp_path) -> None:
    run = trained_run("clap")  # mmattn-train experiment=clap_demo, tiny
    metrics = json.loads((run / "metrics.json").read_text())
    assert _recall_keys("val") | _recall_keys("test") | {"val/loss", "test/loss", "val/mean_r1_best"} <= set(metrics)
    assert all(0 <= metrics[key] <= 1 for key in _recall_keys("test"))
    # 6 test clips: every query finds its match among its 10 best.
    assert metrics["test/audio_to_text_r10"] == metrics["test/text_to_audio_r10"] == 1.0
    assert (run / "tokenizer" / "tokenizer.json").is_file()
    ckpt = run / "checkpoints" / "last.ckpt"

    from mmattn.cli.eval import evaluate
    from mmattn.cli.viz import visualize

    cfg = compose_cfg("eval", [f"ckpt_path={ckpt}"])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "eval"), str(tmp_path / "logs")
    evaluated = evaluate(cfg)
    assert _recall_keys("test") | {"test/loss", "test/mean_r1"} <= set(evaluated)
    # One epoch: the tested best checkpoint is the last one, so the numbers agree.
    assert evaluated["test/mean_r1"] == pytest.approx(metrics["test/mean_r1"])

    pics = visualize(
        compose_cfg("viz", ["what=attention", f"ckpt_path={ckpt}", "num_samples=4", f"out_dir={tmp_path / 'pics'}"])
    )
    assert [p.name for p in pics] == ["similarity.png", "pairs.png"] and all(is_picture(p) for p in pics)


@pytest.mark.slow
def test_a_clap_checkpoint_retrieves_and_predicts(trained_run, compose_cfg, data_dir, tmp_path) -> None:
    ckpt = trained_run("clap") / "checkpoints" / "last.ckpt"
    model = mmattn.load(ckpt)
    assert isinstance(model, ContrastiveModule) and model.tokenizer is not None
    records = [json.loads(line) for line in (data_dir / "spoken_digits" / "test.jsonl").read_text().splitlines()]
    clips = [str(data_dir / "spoken_digits" / r["audio"]) for r in records[:4]]
    texts = [r["text"] for r in records[:4]]

    # Texts for the tower of token ids (encoded as the data does, with the checkpoint's tokenizer), files otherwise.
    text_emb, audio_emb = mmattn.embed(model, "text", texts), mmattn.embed(model, "audio", clips, batch_size=3)
    assert text_emb.shape == audio_emb.shape == (4, 16)
    assert torch.allclose(text_emb.norm(dim=-1), torch.ones(4), atol=1e-5)
    hits = mmattn.retrieve(str(ckpt), texts, clips, query_tower="text", candidate_tower="audio", top_k=3)  # loads it
    assert len(hits) == 4 and all(len(row) == 3 for row in hits)
    best = (text_emb @ audio_emb.T).argmax(dim=1).tolist()
    assert [row[0]["index"] for row in hits] == best
    assert all(row[0]["item"] == clips[row[0]["index"]] for row in hits)
    assert all(row[0]["score"] >= row[1]["score"] >= row[2]["score"] for row in hits)
    with pytest.raises(ValueError, match=r"^retrieval over an empty candidate set"):
        mmattn.retrieve(model, texts, [], query_tower="text", candidate_tower="audio")
    with pytest.raises(ValueError, match=r"no tower 'image'; this DualEncoder's towers are \['audio', 'text'\]"):
        mmattn.embed(model, "image", clips)

    from mmattn.cli.predict import predict

    (tmp_path / "queries.txt").write_text("\n".join(texts) + "\n")
    cfg = compose_cfg(
        "predict",
        [
            f"ckpt_path={ckpt}",
            f"inputs={tmp_path / 'queries.txt'}",
            f"output={tmp_path / 'p.jsonl'}",
            "+options.tower=text",
        ],
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    lines = [json.loads(line) for line in predict(cfg).read_text().splitlines()]
    assert [line["input"] for line in lines] == texts
    assert torch.allclose(torch.tensor([line["embedding"] for line in lines]), text_emb, atol=1e-5)


@pytest.mark.parametrize("vocab", [8, 4000])
def test_the_text_vocabulary_must_fit_the_tokenizer(data_dir, tmp_path, vocab: int) -> None:
    from mmattn.cli.train import train

    cfg = compose_config(
        "train", [*TINY_CLAP, f"paths.data_dir={data_dir}", f"model.towers.text.embed.vocab_size={vocab}"]
    )
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "run"), str(tmp_path / "logs")
    fix = r"; set model.towers.text.embed.vocab_size=\d+$"
    with pytest.raises(
        ValueError, match=rf"^the tokenizer has \d+ ids but model.towers.text.embed.vocab_size is {vocab}.*{fix}"
    ):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()  # stopped at setup, before any step


@pytest.mark.slow
def test_the_attention_maps_callback_logs_the_similarity_matrix(data_dir, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from mmattn.cli.train import train

    overrides = [
        "callbacks=attention_maps",
        "callbacks.attention_maps.num_samples=3",
        "logger=tensorboard",
        "test=false",
    ]
    cfg = compose_config("train", [*TINY_CLAP, f"paths.data_dir={data_dir}", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "run"), str(tmp_path / "logs")
    train(cfg)
    (events,) = (tmp_path / "run" / "tensorboard" / "version_0").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events), size_guidance={"images": 0})
    acc.Reload()
    assert set(acc.Tags()["images"]) == {"attention/similarity", "attention/pairs"}


@pytest.mark.slow
def test_ddp_evaluation_gathers_the_global_batch(run_cli, trained_run, compose_cfg, tmp_path) -> None:
    # The 6 test pairs are one batch in one process, and 3 + 3 on two gloo ranks (trainer=ddp_cpu): gathered, the
    # ranks' loss is the single-process loss of the same global batch, and recall covers the whole split.
    from mmattn.cli.eval import evaluate

    ckpt = trained_run("clap") / "checkpoints" / "last.ckpt"
    cfg = compose_cfg("eval", [f"ckpt_path={ckpt}"])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.log_dir = str(tmp_path / "single"), str(tmp_path / "logs")
    single = evaluate(cfg)
    result = run_cli(
        "mmattn-eval", f"ckpt_path={ckpt}", "trainer=ddp_cpu", "paths.log_dir=ddp", cwd=tmp_path, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "MEMBER: 2/2" in output  # the second rank really ran
    (metrics_file,) = (tmp_path / "ddp").rglob("metrics.json")
    ddp = json.loads(metrics_file.read_text())
    for key in ("test/loss", "test/mean_r1", *_recall_keys("test")):
        assert ddp[key] == pytest.approx(single[key], abs=1e-5), key


@pytest.mark.slow
def test_clip_demo_scores_zero_shot_and_retrieves_image_files(trained_run, compose_cfg, data_dir, tmp_path) -> None:
    run = trained_run("clip")  # mmattn-train experiment=clip_demo, tiny
    metrics = json.loads((run / "metrics.json").read_text())
    pairs = (("image", "text"), ("text", "image"))
    recalls = {f"{s}/{a}_to_{b}_r{k}" for s in ("val", "test") for a, b in pairs for k in (1, 5, 10)}
    assert recalls | {"val/zero_shot_acc", "test/zero_shot_acc", "test/mean_r1"} <= set(metrics)
    ckpt = run / "checkpoints" / "last.ckpt"
    model = mmattn.load(ckpt)
    records = [json.loads(line) for line in (data_dir / "scenes" / "test" / "captions.jsonl").read_text().splitlines()]
    images = [str(data_dir / "scenes" / "test" / r["file"]) for r in records[:3]]
    texts = [r["captions"][0] for r in records[:3]]
    # Image files are read by the recorded data config (the evaluation transform): the same as a batch of them.
    files = mmattn.embed(model, "image", images)
    assert torch.allclose(files, mmattn.embed(model, "image", model.read_files(images)), atol=1e-5)
    hits = mmattn.retrieve(model, texts, images, query_tower="text", candidate_tower="image", top_k=2)
    assert [len(row) for row in hits] == [2, 2, 2] and all(row[0]["item"] in images for row in hits)

    from mmattn.cli.viz import visualize

    pics = visualize(
        compose_cfg("viz", ["what=attention", f"ckpt_path={ckpt}", "num_samples=3", f"out_dir={tmp_path / 'pics'}"])
    )
    assert [p.name for p in pics] == ["similarity.png", "pairs.png"] and all(is_picture(p) for p in pics)
