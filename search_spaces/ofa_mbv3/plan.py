"""once-for-all's MobileNetV3 plan: the widths, strides, squeeze-excite and activations of
its ``OFAMobileNetV3`` at width 1.0, and the input resolutions it trains on (read by the
``ofa_mbv3_full`` space and its cost table)."""

from __future__ import annotations

from typing import Any

__all__ = ["OFA_PLAN", "OFA_RESOLUTIONS"]

#: once-for-all's MobileNetV3 plan at width 1.0: stem, first block, the five elastic stages'
#: widths, strides, squeeze-excite and activations, the final expand and feature-mix widths
OFA_PLAN: dict[str, Any] = {
    "stem": 16, "first_block": 16, "widths": [24, 40, 80, 112, 160],
    "strides": [2, 2, 2, 1, 2], "se": [False, True, False, True, True],
    "activations": ["relu", "relu", "hswish", "hswish", "hswish"],
    "final": 960, "feature_mix": 1280,
}

#: the input resolutions once-for-all trains its supernets on
OFA_RESOLUTIONS: list[int] = list(range(128, 225, 4))
