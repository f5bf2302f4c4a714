"""How a task prepares its data for training: the ``augment`` and ``normalize`` options every
built-in image task shares, and the mixin that resolves them against the task's data set.

Generated data is left as it is unless asked (no augmentation, no normalisation); a real data
set gets the task's augmentation preset and ImageNet's normalisation by default
(:mod:`nastk.data.augment`, :mod:`nastk.nn.normalization`). A task of yours reads the same
options by listing :class:`PreparationOptions` among its ``Options`` bases and
:class:`PreparedData` among its own::

    class MyTask(PreparedData, CachedSplits, Task):
        augment_preset = Augment(flip=0.5, scale=(0.5, 2.0))
        target_layout = TargetLayout(mask=True)

        class Options(PreparationOptions, SplitOptions, ImageSizeOptions):
            ...
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel
from torch.utils.data import Dataset

from nastk.data.augment import (
    Augment,
    Augmented,
    AugmentOption,
    TargetLayout,
    augment_field,
    resolve_augment,
)
from nastk.nn.normalization import (
    Normalization,
    NormalizeOption,
    normalize_field,
    resolve_normalize,
)

__all__ = ["PreparationOptions", "PreparedData"]


class PreparationOptions(BaseModel):
    """Mixin of a task's ``Options``: ``augment`` and ``normalize``."""

    augment: AugmentOption = augment_field()
    normalize: NormalizeOption = normalize_field()


class PreparedData:
    """Mixin of a task whose ``options`` are :class:`PreparationOptions`: the training split
    augmented and the inputs' normalisation, as the options and the data set say.

    A task sets :attr:`augment_preset` (what ``augment: default`` means for a real data set)
    and :attr:`target_layout` (where its samples' targets are); :attr:`real_data` is whether
    its ``dataset`` option names a real data set (anything but ``synthetic``)."""

    augment_preset: ClassVar[Augment]
    target_layout: TargetLayout = TargetLayout()
    options: Any

    @property
    def real_data(self) -> bool:
        """Whether the task reads a real data set (not generated data)."""
        return self.options.dataset != "synthetic"

    @property
    def normalization(self) -> Normalization | None:
        """The inputs' normalisation (the ``normalize`` option resolved)."""
        return resolve_normalize(self.options.normalize, self.real_data)

    def augmented(self, train: Dataset) -> Dataset:
        """``train`` with the augmentation of the ``augment`` option (itself when off)."""
        augment = resolve_augment(self.options.augment, self.real_data, self.augment_preset)
        return train if augment is None else Augmented(train, augment, self.target_layout)
