"""ClassificationModule: metrics keys, mixup path, class-count checks, optimizer and schedule wiring."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from timm.data import Mixup

from mmattn.lit import ClassificationModule


def test_fit_logs_the_documented_keys(make_module, make_trainer, tiny_data) -> None:
    trainer = make_trainer(limit_train_batches=3, limit_val_batches=2)
    trainer.fit(make_module(), datamodule=tiny_data())
    keys = set(trainer.callback_metrics)
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/acc_top5"} <= keys
    trainer.test(datamodule=tiny_data(), ckpt_path=None, model=trainer.lightning_module)
    assert {"test/loss", "test/acc", "test/acc_top5"} <= set(trainer.callback_metrics)


def test_top5_only_with_more_than_five_classes(make_module) -> None:
    module = make_module(num_classes=5)
    assert set(module.val_metrics.keys(keep_base=False)) == {"val/acc"}
    assert set(make_module(num_classes=6).test_metrics.keys(keep_base=False)) == {"test/acc", "test/acc_top5"}


def test_accuracy_is_plain_micro_accuracy(make_module) -> None:
    module = make_module(num_classes=10)
    logits = torch.eye(10)[[0, 1, 2, 3]]
    module.val_metrics.update(logits, torch.tensor([0, 1, 2, 9]))
    assert module.val_metrics.compute()["val/acc"].item() == pytest.approx(0.75)


class SpyMixup:
    """Wraps a real timm Mixup and records what it returned."""

    def __init__(self, num_classes: int) -> None:
        self.mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=num_classes)
        self.num_classes = num_classes
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, soft = self.mixup(x, target)
        self.calls.append((x.clone(), soft.clone()))
        return x, soft


def test_mixup_trains_on_soft_targets_and_skips_train_acc(make_module, make_trainer, tiny_data) -> None:
    spy = SpyMixup(10)
    module = make_module(mixup=spy)
    torch.manual_seed(0)
    images, labels = torch.randn(7, 3, 4, 4), torch.randint(0, 10, (7,))
    loss = module.training_step((images, labels), 0)
    ((mixed, soft),) = spy.calls
    # An odd batch loses one sample (pairwise mixing); targets are probabilities over the classes.
    assert mixed.shape[0] == 6 and soft.shape == (6, 10)
    assert torch.allclose(soft.sum(1), torch.ones(6))
    assert soft.max() < 1.0  # label smoothing and mixing leave no hard one-hot row
    assert loss.item() == pytest.approx(F.cross_entropy(module(mixed), soft).item(), rel=1e-5)

    trainer = make_trainer(limit_train_batches=2, limit_val_batches=1)
    trainer.fit(make_module(mixup=SpyMixup(10)), datamodule=tiny_data())
    assert "train/loss" in trainer.callback_metrics and "train/acc" not in trainer.callback_metrics


def test_class_count_mismatch_with_datamodule_names_both_values(make_module, make_trainer, tiny_data) -> None:
    with pytest.raises(
        ValueError,
        match=r"datamodule has 7 classes but the module was built for num_classes=10.*"
        r"data\.num_classes",
    ):
        make_trainer(limit_train_batches=1).fit(make_module(10), datamodule=tiny_data(num_classes=7))


def test_constructor_checks(make_module, tiny_net) -> None:
    with pytest.raises(ValueError, match="network has 3 outputs but num_classes=10"):
        ClassificationModule(tiny_net(3), 10)
    with pytest.raises(ValueError, match="mixup.num_classes=5 but num_classes=10"):
        make_module(mixup=SpyMixup(5))
    with pytest.raises(ValueError, match="module.optimizer.weight_decay=0.1 would be ignored"):
        make_module(optimizer=functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.1))
    with pytest.raises(ValueError, match="label_smoothing must be in \\[0, 1\\), got 1.0"):
        make_module(label_smoothing=1.0)
    with pytest.raises(ValueError, match="has no optimizer"):
        ClassificationModule(tiny_net(), 10).configure_optimizers()


def test_optimizer_groups_and_per_step_schedule(make_module, make_trainer, tiny_data) -> None:
    scheduler = {"name": "cosine", "warmup_steps": 2, "min_lr": 1e-4, "interval": "step"}
    module = make_module(scheduler=scheduler, weight_decay=0.05)
    trainer = make_trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=1)
    trainer.fit(module, datamodule=tiny_data())
    optimizer = trainer.optimizers[0]
    decays = sorted(g["weight_decay"] for g in optimizer.param_groups)
    assert decays == [0.0, 0.05]
    assert trainer.global_step == 6
    # 6 steps: warmup 2, then cosine over 4; after the last step the schedule sits at step 6 = the floor.
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert trainer.lr_scheduler_configs[0].interval == "step"


def test_hparams_are_plain_and_rebuild_the_module(make_module, make_trainer, tiny_data, tiny_net, tmp_path) -> None:
    module = make_module(scheduler={"warmup_steps": 1}, label_smoothing=0.1, top_k=(1, 3))
    plain = {"num_classes", "scheduler", "weight_decay", "label_smoothing", "compile", "top_k", "classes"}
    assert set(module.hparams) == plain  # a built network records no config: load with net=...
    trainer = make_trainer(limit_train_batches=1, limit_val_batches=1)
    trainer.fit(module, datamodule=tiny_data())
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    rebuilt = ClassificationModule.load_from_checkpoint(path, net=tiny_net(10), weights_only=True)
    assert rebuilt.label_smoothing == 0.1 and "val/acc_top3" in rebuilt.val_metrics.keys(keep_base=False)
    assert torch.equal(rebuilt.net.head.weight, module.net.head.weight)
