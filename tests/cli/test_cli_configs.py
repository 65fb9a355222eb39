"""Every option of every config group composes, and instantiates into the object it promises."""

from __future__ import annotations

import importlib.util
import re
from importlib.resources import files
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from mmattn.cli.selection import resolve_monitors
from mmattn.lit import ClassificationModule

CONFIGS = Path(str(files("mmattn.configs")))
TEXT_DATA = ("scan", "parallel_text")
LM_DATA = ("text_folder", "scan_lm")
SPEECH_DATA = ("speech_manifest", "librispeech", "spoken_digits")
# Pairs for a dual encoder, and image-caption data: no model config reads them yet.
PAIR_DATA = ("spoken_text", "scene_captions", "scene_text")


def options(group: str) -> list[str]:
    """Option names of a config group (its YAML files)."""
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def _paths(cfg, tmp_path: Path) -> None:
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")


def test_config_groups_are_all_there() -> None:
    for group in ("data", "model", "module", "trainer", "logger", "callbacks", "paths", "hydra", "experiment"):
        assert options(group), f"configs/{group}/ has no options"
    assert {"vision_demo", "vit_cifar10", "audio_demo", "ast_speechcommands", "ast_esc50"} <= set(options("experiment"))
    assert {"default", "cpu", "gpu", "ddp", "ddp_cpu"} <= set(options("trainer"))
    assert {"csv", "tensorboard", "wandb", "many"} <= set(options("logger"))


@pytest.mark.parametrize("option", options("data"))
def test_data_options_instantiate(compose_cfg, option: str, tmp_path: Path, env_data_dir: Path) -> None:
    if option == "multitask":
        # Its tasks come from an experiment's `tasks` entries; each task's data option is one of the others.
        cfg = compose_cfg("train", ["experiment=multitask_demo", "data.schedule=round_robin"])
        _paths(cfg, tmp_path)
        datamodule = instantiate(cfg.data)
        assert datamodule.names == ["shapes", "dtmf", "scan"] and datamodule.steps_per_epoch == cfg.data.steps_per_epoch
        assert [type(d).__name__ for d in datamodule.datamodules.values()] == [
            "ShapesDataModule",
            "DTMFDataModule",
            "SCANDataModule",
        ]
        return
    if option in TEXT_DATA:
        # Text data feeds the seq2seq module; the model has vocabulary sizes of its own instead of classes.
        overrides = [f"data={option}", "data.root=" + str(tmp_path), "model=transformer_demo"]
        if option == "parallel_text":
            overrides += ["data.src_lang=de", "data.tgt_lang=en"]
        cfg = compose_cfg("train", overrides)
        _paths(cfg, tmp_path)
        datamodule = instantiate(cfg.data)
        assert isinstance(datamodule, pl.LightningDataModule)
        assert datamodule.vocab_size == cfg.data.vocab_size
        return
    if option in LM_DATA:
        cfg = compose_cfg("train", [f"data={option}", "data.root=" + str(tmp_path), "model=gpt_demo"])
        _paths(cfg, tmp_path)
        datamodule = instantiate(cfg.data)
        assert isinstance(datamodule, pl.LightningDataModule)
        assert datamodule.block_size == cfg.model.context_length
        return
    if option in SPEECH_DATA:
        where = {"speech_manifest": ["data.train_manifest=t.jsonl", "data.valid_manifest=v.jsonl"]}
        overrides = where.get(option, ["data.root=" + str(tmp_path)])
        cfg = compose_cfg("train", [f"data={option}", *overrides, "model=asr_demo", "module=seq2seq"])
        _paths(cfg, tmp_path)
        datamodule = instantiate(cfg.data)  # reads nothing until setup
        assert isinstance(datamodule, pl.LightningDataModule)
        assert cfg.model.source.sample_rate == datamodule.sample_rate
        return
    if option in PAIR_DATA:
        cfg = compose_cfg("train", [f"data={option}", "data.root=" + str(tmp_path)])
        _paths(cfg, tmp_path)
        datamodule = instantiate(cfg.data)  # reads nothing until setup
        assert isinstance(datamodule, pl.LightningDataModule) and datamodule.batch_size == cfg.data.batch_size
        return
    cfg = compose_cfg("train", [f"data={option}", "data.root=" + str(tmp_path), "data.num_classes=10"])
    _paths(cfg, tmp_path)
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, pl.LightningDataModule)
    assert datamodule.num_classes == cfg.data.num_classes == cfg.model.num_classes


PRETRAINED = {
    "vit_small_timm": "tests/tasks/vision/test_pretrained.py",
    "ast_base_audioset": "tests/tasks/audio/test_ast_pretrained.py",
    "fusion_pretrained": "tests/models/test_fusion.py",
}
# The data of model options that no experiment preset uses, or whose preset's data needs a folder (imagefolder);
# the others take their experiment's data.
UNPAIRED_DATA = {
    "vit_base": "shapes",
    "vit_tiny": "shapes",
    "vit_small_data": "shapes",
    "ast_base": "dtmf",
    "fusion_demo": "shape_tone",
}


def _data_of_models() -> dict[str, str]:
    """The data option each model option is trained on: its experiment's, else `UNPAIRED_DATA`'s."""
    pairs = dict(UNPAIRED_DATA)
    for path in sorted((CONFIGS / "experiment").glob("*.yaml")):
        chosen = {}
        for entry in OmegaConf.to_container(OmegaConf.load(path)).get("defaults", []):
            for key, value in entry.items() if isinstance(entry, dict) else ():
                chosen[key.removeprefix("override ").strip("/")] = value
        if "model" in chosen and "data" in chosen:
            pairs.setdefault(chosen["model"], chosen["data"])
    return pairs


def _shallow(node, keys=("depth", "encoder_depth", "decoder_depth")) -> list[str]:
    """Overrides setting every depth in a model config (towers and members included) to 1."""
    found = []
    for key, value in node.items():
        if key in keys:
            found.append(f"{key}=1")
        elif OmegaConf.is_dict(value):
            found += [f"{key}.{o}" for o in _shallow(value, keys)]
    return found


def _float_outputs(out) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else [v for v in out.values() if torch.is_floating_point(v)]


def test_every_model_option_has_its_data() -> None:
    missing = sorted(set(options("model")) - set(_data_of_models()) - set(PRETRAINED))
    assert not missing, f"model options with no experiment and no entry in UNPAIRED_DATA: {missing}"


@pytest.mark.parametrize("option", options("model"))
def test_model_options_build_on_their_data_and_learn(compose_cfg, option: str) -> None:
    # One contract for every family: the net makes its own example input (`example_input`), its forward gives
    # finite outputs and every output reaches a parameter. Depth 1 keeps the big presets cheap.
    if option in PRETRAINED:
        pytest.skip(f"model={option} starts from pretrained weights; {PRETRAINED[option]} builds it from local files")
    if option == "multitask":
        pytest.skip("its task networks come from an experiment: test_the_multitask_demo_networks_share_one_encoder")
    data = _data_of_models()[option]
    cfg = compose_cfg("train", [f"data={data}", f"model={option}"])
    follow = ["data.num_classes=7"] if "num_classes" in cfg.data else []
    shallow = [f"model.{o}" for o in _shallow(cfg.model)]
    cfg = compose_cfg("train", [f"data={data}", f"model={option}", *follow, *shallow])
    torch.manual_seed(0)
    net = instantiate(cfg.model)
    if follow and hasattr(net, "num_classes"):
        assert net.num_classes == 7, "the class count follows the data config"
    inputs = net.example_input(2)
    outputs = _float_outputs(net(*inputs) if isinstance(inputs, tuple) else net(inputs))
    assert outputs and all(o.shape[0] == 2 and torch.isfinite(o).all() for o in outputs)
    sum((o * torch.randn_like(o)).sum() for o in outputs).backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), "no parameter got a gradient"
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


@pytest.mark.parametrize("mixup", [None, *options("module/mixup")])
def test_module_options_instantiate(compose_cfg, mixup: str | None) -> None:
    overrides = ["model.depth=1"] + ([f"module/mixup={mixup}"] if mixup else [])
    cfg = compose_cfg("train", overrides)
    module = instantiate(cfg.module, net=instantiate(cfg.model))
    assert isinstance(module, ClassificationModule)
    assert (module.mixup is None) == (mixup is None)
    # _convert_: all: nothing from OmegaConf reaches the optimizer (its state goes into weights_only checkpoints).
    assert type(module.optimizer_factory.keywords["betas"]) is list


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_options_instantiate(compose_cfg, option: str, tmp_path: Path) -> None:
    cfg = compose_cfg("train", [f"trainer={option}"])
    _paths(cfg, tmp_path)
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        pytest.skip(f"trainer={option} needs a GPU (the config composed)")
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert isinstance(trainer, pl.Trainer)
    if option == "ddp_cpu":
        assert trainer.num_devices == 2 and trainer.strategy.process_group_backend == "gloo"


@pytest.mark.parametrize("option", options("logger"))
def test_logger_options_instantiate(compose_cfg, option: str, tmp_path: Path) -> None:
    cfg = compose_cfg("train", [f"logger={option}"])
    _paths(cfg, tmp_path)
    if "wandb" in cfg.logger and importlib.util.find_spec("wandb") is None:
        pytest.skip("wandb is not installed (the config composed)")
    loggers = [instantiate(node) for node in cfg.logger.values()]
    assert loggers and all(isinstance(lg, pl.loggers.Logger) for lg in loggers)


@pytest.mark.parametrize("option", options("callbacks"))
def test_callback_options_instantiate(compose_cfg, option: str, tmp_path: Path) -> None:
    cfg = compose_cfg("train", [f"callbacks={option}"])
    _paths(cfg, tmp_path)
    resolve_monitors(cfg)
    callbacks = [instantiate(node) for node in cfg.callbacks.values()]
    assert callbacks and all(isinstance(cb, pl.Callback) for cb in callbacks)


def test_default_callbacks_checkpoint_into_the_run_dir(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg("train")
    _paths(cfg, tmp_path)
    resolve_monitors(cfg)
    best = instantiate(cfg.callbacks.model_checkpoint)
    last = instantiate(cfg.callbacks.last_checkpoint)
    preemption = instantiate(cfg.callbacks.preemption)
    assert best.dirpath == last.dirpath == str(tmp_path / "run" / "checkpoints") == str(preemption.dirpath)
    assert best.monitor == "val/acc" and best.mode == "max" and not best.save_last
    assert last.save_last and last.CHECKPOINT_NAME_LAST == "last" and last._train_time_interval.total_seconds() == 1800
    assert preemption.ckpt_path == tmp_path / "run" / "checkpoints" / "preempted.ckpt"


def test_no_experiment_is_the_vision_demo(compose_cfg) -> None:
    plain = OmegaConf.to_container(compose_cfg("train"))
    demo = OmegaConf.to_container(compose_cfg("train", ["experiment=vision_demo"]))
    assert plain == demo


@pytest.mark.parametrize("option", options("experiment"))
def test_experiments_compose(compose_cfg, option: str, tmp_path: Path) -> None:
    cfg = compose_cfg("train", [f"experiment={option}"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices.experiment == option
    _paths(cfg, tmp_path)  # a multi-task module's config holds its tasks' data configs, which name the run directory
    if "data" in cfg and OmegaConf.is_missing(cfg.data, "num_classes"):
        cfg.data.num_classes = 7  # a preset for the user's own folder: the class count is theirs to give
    resolve_monitors(cfg)
    if cfg.module._target_ == "mmattn.lit.Seq2SeqModule":
        # Every preset's model has as many rows as its BPE is asked for (a BPE that falls short stays within the
        # slack the module allows at setup; the demos' setup is tested with their real tokenizers).
        assert cfg.model.tgt_vocab_size == cfg.data.vocab_size
        if "max_tokens" in cfg.data or "max_frames" in cfg.data:
            assert cfg.trainer.use_distributed_sampler is False  # the token-budget sampler shards per rank itself
        checkpoint = cfg.callbacks.model_checkpoint
        selections = (("val/exact", "max"), ("val/bleu", "max"), ("val/wer", "min"), ("val/attributes", "max"))
        assert (checkpoint.monitor, checkpoint.mode) in selections
    elif cfg.module._target_ == "mmattn.lit.ContrastiveModule":
        # The towers that read token ids have as many rows as the BPE is asked for; selection is by mean recall@1.
        vocabularies = [t.embed.vocab_size for t in cfg.model.towers.values() if "vocab_size" in t.embed]
        assert vocabularies == [cfg.data.vocab_size]
        assert cfg.module.tower_names == list(cfg.model.towers)
        checkpoint = cfg.callbacks.model_checkpoint
        assert (checkpoint.monitor, checkpoint.mode) == ("val/mean_r1", "max")
    elif cfg.module._target_ == "mmattn.lit.MultiTaskModule":
        assert cfg.callbacks.model_checkpoint.monitor == "val/score" and cfg.trainer.use_distributed_sampler is False
        for task in cfg.tasks.values():
            classes = task.model.get("num_classes")
            assert classes is None or classes == task.data.num_classes == task.module.num_classes
            assert "tgt_vocab_size" not in task.model or task.model.tgt_vocab_size == task.data.vocab_size
    elif cfg.module._target_ == "mmattn.lit.LanguageModelModule":
        assert cfg.model.vocab_size == cfg.data.vocab_size and cfg.model.context_length >= cfg.data.block_size
        assert cfg.callbacks.model_checkpoint.monitor == "val/loss" and cfg.callbacks.model_checkpoint.mode == "min"
    else:
        assert cfg.model.num_classes == cfg.data.num_classes == cfg.module.num_classes


def test_the_multitask_demo_networks_share_one_encoder_and_each_learns(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg("train", ["experiment=multitask_demo", "core.depth=1"])
    _paths(cfg, tmp_path)
    torch.manual_seed(0)
    net = instantiate(cfg.model)
    assert net.names == list(cfg.tasks) and len({id(net.tasks[name].encoder) for name in net.names}) == 1
    for name in net.names:
        task = net.tasks[name]
        task.zero_grad()
        inputs = task.example_input(2)
        outputs = _float_outputs(task(*inputs) if isinstance(inputs, tuple) else task(inputs))
        assert all(o.shape[0] == 2 and torch.isfinite(o).all() for o in outputs)
        sum((o * torch.randn_like(o)).sum() for o in outputs).backward()
        assert all(p.grad is not None for p in net.core.parameters()), f"{name} does not reach the shared encoder"


def test_vit_cifar10_turns_on_its_recipe(compose_cfg) -> None:
    cfg = compose_cfg("train", ["experiment=vit_cifar10"])
    assert cfg.data.name == "cifar10" and cfg.data.auto_augment.startswith("rand-")
    assert cfg.module.mixup._target_ == "timm.data.Mixup" and cfg.module.mixup.num_classes == 10
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.gradient_clip_val == 1.0


def test_unknown_experiment_lists_the_options(compose_cfg) -> None:
    with pytest.raises(MissingConfigException, match="vision_demo"):
        compose_cfg("train", ["experiment=nope"])


def test_paths_and_run_dir(compose_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MMATTN_DATA_DIR", raising=False)
    monkeypatch.delenv("MMATTN_RUN_DIR", raising=False)
    cfg = compose_cfg("train", return_hydra_config=True)
    assert cfg.paths.data_dir == "data"
    assert cfg.hydra.run.dir.startswith("outputs/train/runs/") and not cfg.hydra.job.chdir
    monkeypatch.setenv("MMATTN_DATA_DIR", "/datasets")
    monkeypatch.setenv("MMATTN_RUN_DIR", "/runs/shared")
    cfg = compose_cfg("train", return_hydra_config=True)
    assert cfg.paths.data_dir == "/datasets" and cfg.hydra.run.dir == "/runs/shared"


def test_eval_config_composes(compose_cfg) -> None:
    cfg = compose_cfg("eval", ["ckpt_path=x.ckpt"])
    assert "data" not in cfg and cfg.task_name == "eval"
    cfg = compose_cfg("eval", ["ckpt_path=x.ckpt", "data=cifar10"])
    assert cfg.data.name == "cifar10"


def test_seq2seq_module_instantiates_with_its_decoding(compose_cfg) -> None:
    from mmattn.lit import Seq2SeqModule

    cfg = compose_cfg("train", ["experiment=translation_demo"])
    module = instantiate(cfg.module, net=instantiate(cfg.model))
    assert isinstance(module, Seq2SeqModule)
    assert module.decoding["beam_size"] == 1 and module.decoding["max_len_a"] == 5.0
    assert type(module.optimizer_factory.keywords["betas"]) is list


def test_gpt_small_has_gpt2_smalls_shape(compose_cfg) -> None:
    from mmattn.models import DecoderOnly

    cfg = compose_cfg("train", ["experiment=gpt_small", "data.root=/text"])
    assert (cfg.model.dim, cfg.model.depth, cfg.model.num_heads, cfg.model.context_length) == (768, 12, 12, 1024)
    net = instantiate(cfg.model)
    assert isinstance(net, DecoderOnly)
    # GPT-2 small: 124,439,808 parameters with its 50,257 tokens and 1,024 learned positions (tied output).
    assert sum(p.numel() for p in net.parameters()) == 124_439_808


def test_asr_librispeech_small_has_its_recipes_shape(compose_cfg) -> None:
    cfg = compose_cfg("train", ["experiment=asr_librispeech_small", "data.root=/datasets/librispeech"])
    m = cfg.model
    assert (m.dim, m.encoder_depth, m.decoder_depth, m.num_heads, m.dim * m.mlp_ratio) == (256, 12, 6, 4, 2048)
    assert (m.source.subsampling, m.source.channels, m.source.num_mel_bins) == (4, 256, 80)
    assert cfg.module.ctc_weight == 0.3 and cfg.data.vocab_size == 5000 and cfg.trainer.accelerator == "gpu"
    assert cfg.data._target_ == "mmattn.tasks.speech.LibriSpeechDataModule" and cfg.data.train_subsets == [
        "train-clean-100"
    ]
    module = instantiate(cfg.module, net=instantiate(cfg.model))
    assert module.decoding["beam_size"] == 10 and module.ctc_weight == 0.3


# Data keys a model config may follow: the datamodule makes its batches exactly that size or checks the data against
# it. A tokenizer's vocabulary is not one (a BPE may come out smaller, bytes ignore it), nor a key the data never uses.
DATA_KEYS_MODELS_FOLLOW = {"img_size", "num_classes", "num_mel_bins", "target_length", "block_size", "sample_rate"}


@pytest.mark.parametrize("option", options("model"))
def test_model_configs_take_their_shape_from_the_model_group(option: str) -> None:
    text = (CONFIGS / "model" / f"{option}.yaml").read_text()
    followed = set(re.findall(r"\$\{data\.(\w+)\}", text))
    assert followed <= DATA_KEYS_MODELS_FOLLOW, f"model/{option}.yaml reads {followed - DATA_KEYS_MODELS_FOLLOW}"
