"""The shared option checks of the search spaces: each rule on its own, as pydantic field types,
and through every built-in space that uses it (the message names the option, the bad value and
the fix)."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, ValidationError

from nastk.core.errors import ConfigError
from nastk.search_spaces.nas_segm import NasSegmSpace
from nastk.search_spaces.ofa_mbv3 import OFAMobileNetV3Space
from nastk.search_spaces.salnas import SalNASSpace
from nastk.search_spaces.small_cnn import SmallCNNSpace
from nastk.space.validators import (
    AscendingChoices,
    Choices,
    OddSizes,
    StageInts,
    check_ascending,
    check_choices,
    check_odd,
    check_stage_ints,
    one_per_stage,
)


def test_check_choices():
    assert check_choices([5, 3, 7], "k") == [5, 3, 7]  # any order
    assert check_choices(["a", "b"], "ops") == ["a", "b"]  # not numbers: no sign to check
    with pytest.raises(ValueError, match=r"^k: needs at least one choice$"):
        check_choices([], "k")
    with pytest.raises(ValueError, match=r"k: choices must be > 0, got \[2, 0, -1\]; drop "
                                         r"\[0, -1\]"):
        check_choices([2, 0, -1], "k")
    with pytest.raises(ValueError, match=r"ops: choices contain duplicates: \['a', 'b', 'a'\]; "
                                         r"list each once, e.g. \['a', 'b'\]"):
        check_choices(["a", "b", "a"], "ops")


def test_check_ascending():
    assert check_ascending([1, 2.5, 4], "e") == [1, 2.5, 4]
    for bad in ([3, 2], [2, 2], [1, 3, 2]):
        with pytest.raises(ValueError, match=rf"e: choices must be strictly ascending .*"
                                             rf"got \[{', '.join(map(str, bad))}\]; use "
                                             rf"\[{', '.join(map(str, sorted(set(bad))))}\]"):
            check_ascending(bad, "e")
    with pytest.raises(ValueError, match="> 0"):
        check_ascending([0, 1], "e")
    with pytest.raises(ValueError, match="at least one choice"):
        check_ascending([], "e")


def test_check_odd_and_stage_ints():
    assert check_odd([1, 3, 7], "kernels") == [1, 3, 7]
    with pytest.raises(ValueError, match=r"kernels: kernel sizes must be odd, got \[3, 4, 6\]; "
                                         r"replace \[4, 6\] by odd sizes"):
        check_odd([3, 4, 6], "kernels")
    assert check_stage_ints([1, 2], "strides") == [1, 2]
    with pytest.raises(ValueError, match=r"strides: values must be >= 1, got \[1, 0\]; "
                                         r"replace \[0\]"):
        check_stage_ints([1, 0], "strides")
    with pytest.raises(ValueError, match="widths: needs a value for at least one stage"):
        check_stage_ints([], "widths")


def test_one_per_stage():
    class Stages(BaseModel):
        strides: list[int]
        se: list[bool]

    one_per_stage(Stages(strides=[1, 2], se=[True, False]), ["strides", "se"], 2, "2 stages")
    with pytest.raises(ValueError, match=r"^se needs one value per stage \(2 stages\), got "
                                         r"\[True\]$"):
        one_per_stage(Stages(strides=[1, 2], se=[True]), ["strides", "se"], 2, "2 stages")


class _Model(BaseModel):
    depths: Choices[int] = [1, 2]
    expands: AscendingChoices[int | float] = [3, 4.5]
    kernels: Annotated[AscendingChoices[int], OddSizes] = [3, 5]
    widths: list[AscendingChoices[int]] | None = None
    strides: StageInts = [1, 2]


def test_field_types_name_the_field():
    m = _Model(expands=[1, 2.5])
    assert m.expands == [1, 2.5] and isinstance(m.expands[1], float)
    cases = [({"depths": [1, 1]}, "depths", "duplicates"),
             ({"expands": [4, 3.5]}, "expands", "ascending"),
             ({"kernels": [3, 4]}, "kernels", "odd"),
             ({"kernels": [5, 3]}, "kernels", "ascending"),
             ({"widths": [[8, 16], [16, 16]]}, "widths.1", "ascending"),
             ({"strides": [2, 0]}, "strides", ">= 1")]
    for options, where, rule in cases:
        with pytest.raises(ValidationError) as err:
            _Model(**options)
        (error,) = err.value.errors()
        assert ".".join(map(str, error["loc"])) == where
        name = where.split(".")[0]
        assert error["msg"].startswith(f"Value error, {name}: ") and rule in error["msg"]


@pytest.mark.parametrize("space", [SmallCNNSpace, OFAMobileNetV3Space, SalNASSpace])
def test_every_space_checks_kernels_alike(space):
    with pytest.raises(ConfigError, match=r"kernels: kernel sizes must be odd, got \[3, 4\]"):
        space(kernels=[3, 4])
    with pytest.raises(ConfigError, match=r"depths: choices must be > 0, got \[0, 1\]"):
        space(depths=[0, 1])
    with pytest.raises(ConfigError, match=r"strides: values must be >= 1"):
        space(strides=[1, 0, 2, 2, 1][: 3 if space is SmallCNNSpace else 5])


@pytest.mark.parametrize("space", [OFAMobileNetV3Space, SalNASSpace])
def test_supernet_spaces_need_ascending_choices(space):
    with pytest.raises(ConfigError, match=r"kernels: .*ascending.*got \[5, 3\]; use \[3, 5\]"):
        space(kernels=[5, 3])
    with pytest.raises(ConfigError, match=r"expands: .*ascending.*got \[4, 3\]"):
        space(expands=[4, 3])
    # the same options in order are fine: the choices are kept as given
    assert space(kernels=[3, 5]).options.kernels == [3, 5]


def test_plain_spaces_take_choices_in_any_order():
    assert SmallCNNSpace(widths=[32, 8]).options.widths == [32, 8]
    with pytest.raises(ConfigError, match=r"widths: choices contain duplicates"):
        SmallCNNSpace(widths=[8, 8])
    with pytest.raises(ConfigError, match=r"strides needs one value per stage \(3 stages\)"):
        SmallCNNSpace(strides=[1, 2])
    with pytest.raises(ConfigError, match=r"ops: choices contain duplicates"):
        NasSegmSpace(ops=["skip", "skip"])
    with pytest.raises(ConfigError, match=r"encoder_depths: values must be >= 1"):
        NasSegmSpace(encoder_depths=[1, 0, 1])
