"""The modality-free datamodule base: class checks, empty splits, test falling back to val, loaders."""

import pytest
import torch
from torch.utils.data import TensorDataset

from mmattn.data import ClassificationDataModule


class _Toy(ClassificationDataModule):
    def __init__(self, sizes: tuple[int, int, int | None], **kwargs) -> None:
        super().__init__(**kwargs)
        self.sizes = sizes

    def _load(self):
        def make(n):
            return None if n is None else TensorDataset(torch.randn(n, 3), torch.arange(n) % 2)

        return (*map(make, self.sizes), ["even", "odd"])


def test_setup_and_loaders() -> None:
    dm = _Toy((10, 4, None), batch_size=4, num_workers=0, num_classes=2)
    dm.setup()
    assert dm.classes == ["even", "odd"] and dm.test_set is dm.val_set
    assert [len(y) for _, y in dm.train_dataloader()] == [4, 4]  # drop_last in training
    assert [len(y) for _, y in dm.val_dataloader()] == [4]
    small = _Toy((3, 3, 3), batch_size=4, num_workers=0)
    small.setup()
    assert [len(y) for _, y in small.train_dataloader()] == [3]  # one short batch rather than none
    assert small.num_classes == 2


def test_errors_name_the_values() -> None:
    with pytest.raises(ValueError, match="num_classes is 3 but the data has 2 classes; set num_classes to 2"):
        _Toy((4, 2, None), batch_size=2, num_workers=0, num_classes=3).setup()
    with pytest.raises(ValueError, match="the val split of _Toy is empty"):
        _Toy((4, 0, None), batch_size=2, num_workers=0).setup()
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        _Toy((4, 2, None), batch_size=0, num_workers=0)
    with pytest.raises(RuntimeError, match=r"_Toy.setup\(\) must run before"):
        _Toy((4, 2, None), batch_size=2, num_workers=0).train_dataloader()
    with pytest.raises(TypeError, match="abstract method _load"):
        ClassificationDataModule(batch_size=2, num_workers=0)  # a subclass says where its data comes from
