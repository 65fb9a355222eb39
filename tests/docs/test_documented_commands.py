"""Every mmattn command shown in README.md and docs/ runs here, with tiny overrides, so a documented command cannot rot.

A command is run in-process on local stand-ins for its paths (`/my/images` becomes a small image folder,
`outputs/<task>/runs/<run>` a tiny finished run of that task, ...). A command that needs what this machine lacks (a
GPU, a download, a SLURM partition, several DDP processes started by Lightning) is composed exactly as written and
checked (config keys, selection metric, trainer preflight where it can run), and the test that runs its kind of job
for real is named in `ELSEWHERE`.
"""

from __future__ import annotations

import functools
import io
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mmattn_testing import FAMILIES, compose_config
from omegaconf import DictConfig, open_dict
from PIL import Image

from mmattn.cli.selection import resolve_monitors

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFIG_OF = {
    "mmattn-train": "train",
    "mmattn-eval": "eval",
    "mmattn-translate": "translate",
    "mmattn-generate": "generate",
    "mmattn-transcribe": "transcribe",
    "mmattn-viz": "viz",
    "mmattn-predict": "predict",
    "mmattn-export": "export",
    "mmattn-shards": "shards",
}
# Run directories in the docs (outputs/<task>/runs/<run>) and the family whose tiny run stands in for them.
TASK_FAMILY = {
    "train": "vision",
    "lm_demo": "lm",
    "translation_demo": "translation",
    "speech_demo": "speech",
    "clap_demo": "clap",
    "clip_demo": "clip",
    "caption_demo": "caption",
    "fusion_demo": "fusion",
    "multitask_demo": "multitask",
}
# `ckpt_path=...`: the family each command needs.
PROG_FAMILY = {
    "mmattn-translate": "translation",
    "mmattn-generate": "lm",
    "mmattn-transcribe": "speech",
    "mmattn-viz": "vision",
    "mmattn-eval": "vision",
    "mmattn-predict": "vision",
    "mmattn-export": "vision",
}
# Why a command is only composed here, and which test runs that kind of job for real.
ELSEWHERE = {
    r"trainer=(gpu|ddp|fsdp)\b": "needs GPUs (the CPU DDP path: tests/cli/test_cli_ddp.py)",
    r"data\.download=true": "downloads a dataset (each reader is tested on files in the real layout)",
    r"hydra/launcher=slurm": "submits to a SLURM partition (tests/cli/test_cli_slurm.py, on a one-node test cluster)",
    r"^-m$": "a sweep of separate jobs (tests/cli/test_cli_scale_out.py runs one on the local launcher)",
    r"trainer=ddp_cpu": "Lightning re-launches the script per rank (tests/cli/test_cli_ddp.py runs it)",
    r"^/datasets": "a full public dataset (its reader is tested on a small copy in the real layout)",
    r"^--help$": "prints Hydra's help (composition is what can break)",
    r"hparams_search=": "a sweep of runs (tests/cli/test_cli_training_options.py runs a two-trial search)",
    r"logger=wandb": "W&B keeps a run open per process (tests/cli/test_cli_training_options.py runs it)",
    r"hydra\.searchpath": "a package outside mmattn (tests/examples/test_timeseries_example.py runs these)",
    r"outputs/timeseries_": "a package outside mmattn (tests/examples/test_timeseries_example.py runs these)",
    r"^s3://": "an object store (litdata's own clients; writing and reading shards are tested on local folders)",
    r"data\.only=": "starts from the vision and audio demos' runs (tests/models/test_fusion.py builds such members, "
    "tests/cli/test_cli_multimodal.py evaluates with one input absent)",
}


@dataclass
class Command:
    doc: str
    prog: str
    args: list[str]
    stdin: str | None = None
    files: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.doc}: {self.prog} {' '.join(self.args + self.files)}"[:150]


def documented_commands() -> list[Command]:
    """Each mmattn-* command of the bash blocks of the docs (continuation lines joined, comments dropped)."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                stdin = None
                piped = re.match(r'\s*echo "([^"]*)" \| (.*)', line)
                if piped:
                    stdin, line = piped.group(1) + "\n", piped.group(2)
                words = shlex.split(line, comments=True)
                if not words or words[0] not in CONFIG_OF:
                    continue
                args = [w for w in words[1:] if "=" in w or w.startswith("-")]
                files = [w for w in words[1:] if w not in args]
                found.append(Command(doc.name, words[0], args, stdin, files))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_every_console_script() -> None:
    assert {c.prog for c in COMMANDS} == set(CONFIG_OF), "a console script without a documented command"
    assert len(COMMANDS) > 40


def _why_not_run(args: list[str]) -> str | None:
    for pattern, why in ELSEWHERE.items():
        for arg in args:
            value = arg.split("=", 1)[-1]
            if re.search(pattern, arg) or re.search(pattern, value):
                return why
    return None


@pytest.fixture(scope="module")
def user_data(tmp_path_factory: pytest.TempPathFactory, trained_run, data_dir: Path) -> dict[str, Path]:
    """Small stand-ins, in the layouts the docs name, for the user's own folders."""
    root = tmp_path_factory.mktemp("user_data")
    rng = np.random.default_rng(0)
    for c in range(5):
        (root / "images" / f"class{c}").mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / f"class{c}" / f"{i}.jpg")
    for c in range(12):
        (root / "clips" / f"word{c}").mkdir(parents=True)
        for i in range(3):
            wave = 0.1 * np.sin(2 * np.pi * (200 + 50 * c) * np.arange(8000) / 16000)
            sf.write(root / "clips" / f"word{c}" / f"{i}.wav", wave.astype(np.float32), 16000)
    (root / "text").mkdir()
    lines = ["the cat sat on the mat", "a dog ran in the park", "birds sing in the morning"]
    for i in range(4):
        (root / "text" / f"doc{i}.txt").write_text("\n\n".join(lines[i % 3 :] + lines[: i % 3]) * 20)
    (root / "corpus").mkdir()
    pairs = [("le chat", "the cat"), ("un chien", "a dog"), ("la maison", "the house"), ("le chien", "the dog")]
    for split, n in (("train", 40), ("valid", 8), ("test", 8)):
        (root / "corpus" / f"{split}.fr").write_text("".join(f"{pairs[i % 4][0]}\n" for i in range(n)))
        (root / "corpus" / f"{split}.en").write_text("".join(f"{pairs[i % 4][1]}\n" for i in range(n)))
    # /data/*.jsonl: the spoken digits of the tiny speech run (audio paths are relative to the manifests).
    trained_run("speech")
    digits = data_dir / "spoken_digits"
    (root / "manifests").mkdir()
    for name, split in (("train", "train"), ("dev", "valid"), ("test", "test")):
        (root / "manifests" / f"{name}.jsonl").symlink_to(digits / f"{split}.jsonl")
        (root / "manifests" / split).symlink_to(digits / split)
    import mmattn

    mmattn.load(trained_run("vision") / "checkpoints" / "last.ckpt").save_pretrained(root / "my-vit")
    return {
        "my-vit": root / "my-vit",
        "/my/images": root / "images",
        "/my/clips": root / "clips",
        "/my/text": root / "text",
        "/my/corpus": root / "corpus",
        "/data/": root / "manifests",
    }


def _substitute(arg: str, prog: str, user_data: dict[str, Path], trained_run) -> str:
    """One argument with the docs' placeholders replaced by local stand-ins."""
    key, sep, value = arg.partition("=")
    run = re.match(r"outputs/(\w+)/runs/<run>(.*)", value)
    if run:
        value = f"{trained_run(TASK_FAMILY[run.group(1)])}{run.group(2)}"
    elif value == "...":
        value = str(trained_run(PROG_FAMILY[prog]) / "checkpoints" / "last.ckpt")
    for prefix, path in user_data.items():
        if value.startswith(prefix):
            value = str(path / value[len(prefix) :].lstrip("/"))
    return f"{key}{sep}{value}"


def _first_of_sweeps(args: list[str]) -> list[str]:
    """A multirun's first job: `lr=1e-3,3e-3` -> `lr=1e-3` (the compose API takes no sweeps)."""
    return [re.sub(r"=([^\[\]{},]+),.*$", r"=\1", a) for a in args if a != "-m"]


@functools.cache
def _family_data() -> dict[str, str]:
    """The datamodule each family's demo run trains on."""
    return {
        family: compose_config("train", [o for o in overrides if o.startswith("experiment=")]).data._target_
        for family, overrides in FAMILIES.items()
    }


def _tiny(cfg: DictConfig) -> list[str]:
    """The tiny-run overrides (model widths, demo data sizes, batches) that apply to the keys this config has."""
    chosen: dict[str, str] = {}
    # The family on the same data first: a demo is generated once per session, at that family's sizes (the DTMF
    # demo's train_per_class is the audio family's, not the vision family's shapes size of the same name).
    target = cfg.data.get("_target_") if "data" in cfg else None
    families = sorted(FAMILIES, key=lambda family: _family_data()[family] != target)
    for override in [o for family in families for o in FAMILIES[family]]:
        key, value = override.split("=", 1)
        plain = key.lstrip("+")
        # Group choices (experiment=, model=) belong to their family's own run, never to another command.
        if "." not in plain or plain in chosen:
            continue
        if key.startswith("+") or _has(cfg, plain):
            chosen[plain] = override
    for key in ("data.batch_size=4", "data.num_workers=0", "data.block_size=16", "model.source.channels=8"):
        if _has(cfg, key.split("=")[0]):
            chosen.setdefault(key.split("=")[0], key)
    return list(chosen.values())


def _has(cfg: DictConfig, dotted: str) -> bool:
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False
        node = node[part]
    return True


# The model's vocabulary keys and the tokenizer size each must fit.
VOCAB_KEYS = {"vocab_size": "tgt_vocab_size", "src_vocab_size": "src_vocab_size", "tgt_vocab_size": "tgt_vocab_size"}


def _stand_in_vocab(plain: DictConfig) -> list[str]:
    """The model's vocabulary sizes for a run on a stand-in of the user's text.

    A command on one's own text must give the model as many rows as it asks the tokenizer for (what a real corpus
    fills; checked here). The stand-in is a few lines, too few to fill a real BPE, so the run gets the sizes of the
    tokenizer trained on it, as it gets tiny widths.
    """
    keys = [k for k in VOCAB_KEYS if k in plain.model and not (k == "src_vocab_size" and plain.model.get("source"))]
    if not keys or "tokenizer_dir" not in plain.data:
        return []
    asked = 260 if plain.data.get("tokenizer") == "bytes" else plain.data.vocab_size
    for key in keys:
        assert plain.model[key] == asked, f"model.{key}={plain.model[key]} but the command asks for {asked} tokens"
    from hydra.utils import instantiate

    tokenizer = instantiate(
        plain.data, tokenizer_dir=None, **({"token_dir": None} if "token_dir" in plain.data else {})
    ).build_tokenizer()
    return [f"model.{key}={getattr(tokenizer, VOCAB_KEYS[key])}" for key in keys]


def _run_config(name: str, overrides: list[str], out: Path) -> DictConfig:
    cfg = compose_config(name, overrides)
    if "paths" in cfg:
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
            cfg.paths.log_dir = str(out.parent / "logs")
    return cfg


def _write_file(path: Path, data_dir: Path) -> None:
    """A small real file of the kind its name says: an image, or a spoken-digits clip in that audio format."""
    if path.suffix in (".png", ".jpg"):
        pixels = np.random.default_rng(len(path.name)).integers(0, 255, (48, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
    else:
        clip = sorted((data_dir / "spoken_digits" / "test").glob("*.flac"))[len(path.name) % 5]
        wave, rate = sf.read(clip)
        sf.write(path, wave, rate)


def _predict_inputs(path: Path, data_dir: Path) -> None:
    """What mmattn-predict's `inputs=` names: a folder of photos, a manifest of clips, or a text file of lines."""
    if path.suffix == ".jsonl":
        for name in ("a.wav", "b.flac"):
            _write_file(path.parent / name, data_dir)
        path.write_text('{"audio": "a.wav"}\n{"audio_filepath": "b.flac"}\n')
    elif path.suffix == ".txt":
        path.write_text("jump twice\nwalk left\n")
    else:
        path.mkdir()
        for name in ("a.png", "b.jpg", "c.png"):
            _write_file(path / name, data_dir)


def _make_inputs(command: Command, cwd: Path, data_dir: Path, trained_run) -> None:
    """The files a command names in its own directory (images, audio clips, a source text, a checkpoint)."""
    for arg in command.args:
        value = arg.split("=", 1)[-1]
        if arg.startswith("ckpt_path=") and value.endswith(".ckpt") and "/" not in value:
            # One task of a multi-task run, as the export command before it writes it (task=<stem> out=<stem>.ckpt).
            import mmattn

            run = mmattn.load(trained_run("multitask") / "checkpoints" / "last.ckpt")
            run.save_task(Path(value).stem, cwd / value)
        if arg.startswith("inputs=") and command.prog == "mmattn-predict":
            _predict_inputs(cwd / arg.split("=", 1)[1], data_dir)
        elif arg.startswith("inputs="):
            for name in arg.split("=", 1)[1].strip("[]").split(","):
                _write_file(cwd / name, data_dir)
        if arg.startswith("input="):
            (cwd / arg.split("=", 1)[1]).write_text("jump twice\nwalk left\n")
    for name in command.files:
        _write_file(cwd / name, data_dir)


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_documented_command(
    command: Command,
    user_data: dict[str, Path],
    trained_run,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMATTN_DATA_DIR", str(data_dir))
    name = CONFIG_OF[command.prog]
    why = _why_not_run(command.args)
    if why is not None and any(marker in " ".join(command.args) for marker in ("searchpath", "timeseries_")):
        pytest.skip(why)  # the example package is not installed in this environment; its own test runs them
    args = [_substitute(a, command.prog, user_data, trained_run) for a in command.args]
    if why is not None:
        # Composed as written (the first job of a sweep), with the checks that run before any job starts.
        from mmattn.cli.cluster import check_trainer

        overrides = [a for a in _first_of_sweeps(args) if a not in ("--help", "-m")]
        cfg = compose_config(name, overrides, return_hydra_config=True)
        if name == "train":
            resolve_monitors(cfg)
            if cfg.trainer.accelerator == "cpu":
                check_trainer(cfg.trainer)
        return

    _make_inputs(command, tmp_path, data_dir, trained_run)
    if name == "train":
        own_data = any(a.partition("=")[2].startswith(tuple(user_data)) for a in command.args)
        _run_train(args, trained_run, tmp_path, own_data)
    elif name == "eval":
        from mmattn.cli.eval import evaluate

        assert evaluate(_run_config("eval", [*args, "+trainer.limit_test_batches=1"], tmp_path / "eval"))
    elif name == "translate":
        from mmattn.cli.translate import translate

        monkeypatch.setattr(sys, "stdin", io.StringIO(command.stdin or ""))
        out = translate(_run_config("translate", args, tmp_path))
        expected = (command.stdin or (tmp_path / "test.de").read_text()).splitlines()
        assert len(out) == len(expected)
    elif name == "generate":
        from mmattn.cli.generate import generate

        cfg = _run_config("generate", [*args, "max_new_tokens=8"], tmp_path)
        assert len(generate(cfg)) == cfg.num_samples
    elif name == "transcribe":
        from mmattn.cli.transcribe import transcribe

        assert len(transcribe(_run_config("transcribe", args, tmp_path), command.files)) == len(command.files)
    elif name == "export":
        from mmattn.cli.export import export

        record = export(_run_config("export", args, tmp_path))
        if "format=ckpt" in args:  # one task of a multi-task model as a checkpoint file
            assert Path(record["checkpoint"]).is_file()
        else:
            assert all(entry["max_abs_diff"] < 1e-4 for entry in record["parts"].values())
    elif name == "shards":
        written = _write_shards(args, tmp_path)
        assert written and all(split.num_items > 0 for split in written)
    elif name == "predict":
        from mmattn.cli.predict import predict

        lines = predict(_run_config("predict", args, tmp_path)).read_text().splitlines()
        assert len(lines) in (2, 3) and all("error" not in line for line in lines)
    else:
        from mmattn.cli.viz import visualize

        cfg = _run_config("viz", [*args, "num_samples=1"] if "what=attention" in args else args, tmp_path)
        assert all(p.is_file() for p in visualize(cfg))
    capsys.readouterr()


def _run_train(args: list[str], trained_run, cwd: Path, own_data: bool) -> None:
    """An mmattn-train command, tiny: the shared run of its family where it is exactly that, else a run of its own
    (on the stand-in of the user's own data when it names some)."""
    for family, overrides in FAMILIES.items():
        experiment = [o for o in overrides if o.startswith("experiment=")]
        if args == experiment:
            assert (trained_run(family) / "metrics.json").is_file()
            return
    if "ckpt_path=last" in args:
        # Resume a run in place: a copy of the shared vision run, trained one epoch further.
        run = cwd / "resumed"
        shutil.copytree(trained_run("vision"), run)
        cfg = _run_config("train", [*FAMILIES["vision"], "ckpt_path=last", "trainer.max_epochs=2"], run)
    else:
        plain = compose_config("train", args)
        vocab = _stand_in_vocab(plain) if own_data else []
        if plain.data.get("format") == "shards":
            # Its shards first, as the command the docs show before it writes them (the same data options).
            option = compose_config("train", args, return_hydra_config=True).hydra.runtime.choices.data
            data = [a for a in args if a.startswith(("data.", "paths.")) and not a.startswith("data.format=")]
            _write_shards([f"data={option}", *data], cwd)
        cfg = _run_config("train", [*args, *_tiny(plain), *vocab], cwd / "run")
    from mmattn.cli.train import train

    metrics = train(cfg)
    assert any(key.startswith("val/") for key in metrics), metrics


def _write_shards(args: list[str], cwd: Path) -> list:
    """An mmattn-shards command, tiny (the demo data sizes every test uses)."""
    from mmattn.cli.shards import write

    plain = compose_config("shards", args)
    return write(_run_config("shards", [*args, *(o for o in _tiny(plain) if o.startswith("data."))], cwd / "run"))


def documented_python() -> list[tuple[str, str]]:
    """The Python examples of the docs that use a trained model: (doc name, code)."""
    return [
        (doc.name, code)
        for doc in DOCS
        for code in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
        if "mmattn.load(" in code
    ]


@pytest.mark.slow
@pytest.mark.parametrize("doc,code", documented_python(), ids=lambda v: v[:40] if v.endswith(".md") else "")
def test_documented_python(
    doc: str, code: str, trained_run, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    code = re.sub(r"outputs/(\w+)/runs/<run>", lambda m: str(trained_run(TASK_FAMILY[m.group(1)])), code)
    for name in re.findall(r'"([\w-]+\.(?:png|jpg|flac|wav))"', code):
        _write_file(tmp_path / name, data_dir)
    if "vit-onnx" in code:
        import mmattn
        from mmattn.export import export_module

        vision = mmattn.load(trained_run("vision") / "checkpoints" / "last.ckpt")
        export_module(vision, tmp_path / "vit-onnx", check=False)  # what the README's mmattn-export command wrote
    exec(compile(code, f"{doc} (python example)", "exec"), {"__name__": "__docs__"})
    assert capsys.readouterr().out.strip()  # the examples print what they compute
