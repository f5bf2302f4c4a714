"""Starting from pretrained weights: ``init: {from: FILE, part: body | all, format}`` and per-part
learning-rate multipliers (``lr_mult: {body: 0.1}``), for train evaluators and supernet
training.

The file is read with ``torch.load(..., weights_only=True)`` and may be a plain state dict (a
trial checkpoint, ``nastk.core.weights.save_weights``), a supernet checkpoint (``nastk supernet
train``) or a ``nastk export`` ``model.pt``. Tensors are matched by name: a classification
model's ``body.*`` fits a segmentation or detection model with the same body, whatever their
heads. When a *plain* network of a weight-sharing space is initialised from a *supernet*
checkpoint, the file's supernet body is loaded first and the architecture's sub-network is
extracted from it (a candidate starts from the weights it would inherit in the supernet).

Every load gives a :class:`LoadReport`: the tensors loaded, missing (left as initialised),
unexpected (in the file, not in the model), shape-mismatched and ignored (outside ``part``),
each named. A file that fits no tensor at all fails with a message naming the file and the
first expected tensor.

``format: ofa`` or ``format: torchvision`` reads a checkpoint saved in a public project's tensor
names (once-for-all's ``OFAMobileNetV3``; torchvision's ResNets and MobileNetV2): the space's key
table (:mod:`nastk.nn.layouts`, :meth:`SearchSpace.public_layout`) renames the file's tensors
first; then the load is the same, except that a tensor of the wrong shape stops it, naming the
file's tensor and the shape expected. A once-for-all file holds a supernet, so a candidate's
network is extracted from it as from a nastk supernet checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import ConfigDict, Field
from torch import nn

from nastk.core.errors import ConfigError, NastkError
from nastk.core.options import QuietDefaults
from nastk.core.weights import load_file

if TYPE_CHECKING:
    from nastk.space.architecture import Architecture
    from nastk.space.search_space import SearchSpace

__all__ = ["InitConfig", "LoadReport", "file_state", "load_init", "lr_groups"]

SUPERNET_FORMAT = "nastk.supernet/1"
EXPORT_FORMAT = "nastk.export/1"


class InitConfig(QuietDefaults):
    """``init:`` — the weights a model starts from instead of its random initialisation."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    # runs stored before formats existed dump (and are identified) as they were
    quiet_defaults: ClassVar[tuple[str, ...]] = ("format",)

    from_: Path = Field(alias="from", description="weights-only file: a trial checkpoint, a "
                                                  "supernet checkpoint or an exported model.pt")
    part: Literal["body", "all"] = Field(
        "body", description="body: only the network body's tensors (a new head starts fresh); "
                            "all: every tensor whose name and shape fit")
    format: Literal["nastk", "ofa", "torchvision"] = Field(
        "nastk", description="the file's tensor names: nastk (a file nastk wrote); ofa "
        "(once-for-all's OFAMobileNetV3 checkpoint, for space ofa_mbv3_full); torchvision (an "
        "ImageNet ResNet-18/50/101 or MobileNetV2 checkpoint, for spaces backbones and "
        "nas_segm's MobileNetV2 encoder)")

    def check(self, space: SearchSpace | None = None) -> None:
        """Fail now, naming the path, if the file is missing or is not a weights file nastk
        can read (it is read once here: a text file, a truncated or pickled-object checkpoint
        stops the run before its first trial rather than failing every trial), or if ``space``
        reads no checkpoints of ``format``. Configs are also parsed where the file need not
        exist, e.g. to report on a finished run, so this is called by what is about to
        train."""
        if space is not None and self.format != "nastk" and \
                self.format not in space.public_formats:
            space.public_layout(self.format)  # raises, naming the formats the space reads
        if not Path(self.from_).is_file():
            raise ConfigError(f"init.from: {self.from_} not found; give the path of a checkpoint "
                              "written by nastk (a search's checkpoints/trial_N.pt, a "
                              "supernet's supernet.pt or an export's model.pt)")
        try:
            file_state(self.from_)
        except NastkError as err:
            raise ConfigError(f"init.from: {err}") from None


@dataclass
class LoadReport:
    """What :func:`load_init` did, tensor by tensor."""

    file: str
    part: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "name: file (a, b) vs model (c, d)"
    ignored: list[str] = field(default_factory=list)  # in the file, outside `part`
    extracted: bool = False  # a sub-network was extracted from a supernet checkpoint

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line: counts, and the first names of each kind."""
        def few(names: list[str]) -> str:
            shown = ", ".join(names[:3])
            return f" ({shown}{', ...' if len(names) > 3 else ''})" if names else ""

        return (f"init from {self.file} (part {self.part}"
                + (", sub-network extracted from the supernet" if self.extracted else "")
                + f"): {len(self.loaded)} tensors loaded, {len(self.missing)} missing"
                + few(self.missing) + f", {len(self.unexpected)} unexpected"
                + few(self.unexpected) + f", {len(self.mismatched)} shape-mismatched"
                + few(self.mismatched) + f", {len(self.ignored)} outside the part")


def file_state(path: str | Path) -> tuple[str, dict[str, torch.Tensor]]:
    """``(kind, state_dict)`` of a weights file: kind ``supernet``, ``export`` or ``weights``."""
    p = Path(path)
    data = load_file(p, "init file", "; give the path of a checkpoint written by nastk")
    if isinstance(data, dict) and data.get("format") == SUPERNET_FORMAT:
        return "supernet", dict(data["model"])
    if isinstance(data, dict) and data.get("format") == EXPORT_FORMAT:
        return "export", dict(data["state_dict"])
    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor)
                                               for v in data.values()):
        return "weights", dict(data)
    for key in ("state_dict", "model"):
        inner = data.get(key) if isinstance(data, dict) else None
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor)
                                                     for v in inner.values()):
            return "weights", dict(inner)
    raise NastkError(f"init file {p} holds no state dict of tensors (a plain state dict, or a "
                     f"dict with 'model' or 'state_dict'); got {type(data).__name__}")


def _in_part(name: str, part: str) -> bool:
    return part == "all" or name.startswith("body.")


def _extract_from_supernet(state: dict[str, torch.Tensor], space: SearchSpace,
                           arch: Architecture, in_channels: int, path: Path | None = None,
                           init: InitConfig | None = None, origin: Mapping[str, str] | None = None
                           ) -> dict[str, torch.Tensor]:
    """The plain body of ``arch`` with the supernet ``state``'s weights (``body.*`` names);
    the file's other tensors are kept as they are. A file in a public layout (``init.format``
    not nastk) must fit the supernet tensor for tensor: the first that does not stops the
    load, named by ``origin`` (nastk name -> public key)."""
    from nastk.nn.supernet import SupernetSpace

    assert isinstance(space, SupernetSpace)
    supernet = space.build_supernet(in_channels)
    body_state = {k[len("body."):]: v for k, v in state.items() if k.startswith("body.")}
    own = supernet.state_dict()
    if init is not None and init.format != "nastk" and origin is not None:
        assert path is not None
        for k, v in body_state.items():
            if k in own and own[k].shape != v.shape:
                _public_mismatch(path, init.format, origin.get(f"body.{k}", k), f"body.{k}", v,
                                 own[k])
    fit = {k: v for k, v in body_state.items() if k in own and own[k].shape == v.shape}
    if not fit:
        first = next(iter(own), "?")
        raise NastkError(f"the supernet checkpoint's body fits no tensor of a "
                         f"{space.name!r} supernet (first expected: body.{first}); was it "
                         "trained for another space or space options?")
    supernet.load_state_dict(fit, strict=False)
    arch = space.validate(arch)
    supernet.set_active(arch)
    body = supernet.extract(arch)
    out = {k: v for k, v in state.items() if not k.startswith("body.")}
    out.update({f"body.{k}": v.detach().clone() for k, v in body.state_dict().items()})
    return out


@torch.no_grad()
def load_init(model: nn.Module, init: InitConfig, *, space: SearchSpace | None = None,
              arch: Architecture | None = None, in_channels: int | None = None) -> LoadReport:
    """Copy the tensors of ``init.from_`` that fit ``model`` (by name and shape, within
    ``init.part``) into it and report each tensor's fate. ``space``/``arch``/``in_channels``
    let a plain network of a weight-sharing space start from a supernet checkpoint."""
    path = Path(init.from_)
    kind, state = file_state(path)
    report = LoadReport(str(path), init.part)
    own = model.state_dict()
    from nastk.nn.supernet import SupernetBody, SupernetSpace

    origin: dict[str, str] = {}
    if init.format != "nastk":
        kind, state, origin = _convert_public(path, init, state, space, arch, report)

    body = getattr(model, "body", None)
    if (kind == "supernet" and space is not None and arch is not None
            and isinstance(space, SupernetSpace) and not isinstance(body, SupernetBody)):
        state = _extract_from_supernet(state, space, arch,
                                       in_channels if in_channels is not None else 3,
                                       path, init, origin)
        report.extracted = True
    fitting: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if not _in_part(name, init.part):
            report.ignored.append(origin.get(name, name))
        elif name not in own:
            report.unexpected.append(origin.get(name, name))
        elif tuple(own[name].shape) != tuple(tensor.shape):
            if init.format != "nastk":
                _public_mismatch(path, init.format, origin.get(name, name), name, tensor,
                                 own[name])
            report.mismatched.append(f"{name}: file {tuple(tensor.shape)} vs model "
                                     f"{tuple(own[name].shape)}")
        else:
            fitting[name] = tensor
    if not fitting:
        first = next((n for n in own if _in_part(n, init.part)), next(iter(own), "?"))
        shape = tuple(own[first].shape) if first in own else ()
        example = next(iter(state), "(none)")
        raise NastkError(f"init file {path} fits no tensor of the model (part {init.part!r}): "
                         f"the first expected tensor is {first!r} {shape}, the file holds "
                         f"e.g. {example!r}. Was it trained with another space, space "
                         "options or body?")
    for name, tensor in fitting.items():
        own[name].copy_(tensor.to(own[name].device, own[name].dtype))
        report.loaded.append(name)
    report.missing = [n for n in own if n not in fitting]
    return report


def _convert_public(path: Path, init: InitConfig, state: dict[str, torch.Tensor],
                    space: SearchSpace | None, arch: Architecture | None, report: LoadReport
                    ) -> tuple[str, dict[str, torch.Tensor], dict[str, str]]:
    """A public checkpoint's state in nastk's names, through the space's key table: ``(kind,
    state, origin)``, ``kind`` ``supernet`` when the table names a supernet model's tensors.
    Public keys the table skips on purpose are reported as ignored; keys it does not know as
    unexpected (under their public names). A file that matches none of the table fails."""
    if space is None:
        raise ConfigError(f"init.format {init.format!r} needs the search space whose networks "
                          "load the file (its key table maps the file's names)")
    table = space.public_layout(init.format, arch)
    converted = table.convert(state)
    if not converted.state:
        example = next(iter(state), "(none)")
        raise NastkError(f"init file {path} is not a {table.model} checkpoint: none of its "
                         f"{len(state)} tensors has a name of that layout (e.g. {example!r}); "
                         f"check init.format ({init.format!r}) and the space's options")
    report.ignored.extend(converted.skipped)
    report.unexpected.extend(converted.unmatched)
    return ("supernet" if table.supernet else "weights"), converted.state, converted.origin


def _public_mismatch(path: Path, fmt: str, public: str, name: str, tensor: torch.Tensor,
                     expected: torch.Tensor) -> None:
    """Stop a public-layout load at its first tensor of the wrong shape, naming it."""
    raise NastkError(f"init file {path} (format {fmt}): tensor {public!r} has shape "
                     f"{tuple(tensor.shape)}, the model expects {tuple(expected.shape)} for it "
                     f"({name}); was the checkpoint saved for other options (width multiplier, "
                     "number of classes with part all, kernel or expand choices)?")


def _parts_of(names: Iterable[str]) -> list[str]:
    return sorted({n.split(".", 1)[0] for n in names})


def lr_groups(named: Iterable[tuple[str, nn.Parameter]], lr_mult: Mapping[str, float]
              ) -> list[tuple[float, list[nn.Parameter]]]:
    """Split parameters by the longest ``lr_mult`` prefix that names them (``body`` matches
    ``body`` and ``body.*``); ``[(multiplier, params), ...]``, multiplier 1 for the rest, in a
    fixed order, empty groups left out. A prefix that names no parameter is a
    :class:`~nastk.core.errors.ConfigError` listing the model's parts."""
    named = list(named)
    prefixes = sorted(lr_mult, key=len, reverse=True)
    used: set[str] = set()
    groups: dict[str | None, list[nn.Parameter]] = {}
    for name, p in named:
        match = next((q for q in prefixes if name == q or name.startswith(q + ".")), None)
        if match is not None:
            used.add(match)
        groups.setdefault(match, []).append(p)
    unused = [q for q in lr_mult if q not in used]
    if unused:
        raise ConfigError(f"lr_mult: {unused} name no parameter of the model; its parts are "
                          f"{_parts_of(n for n, _ in named)} (use a part, or a dotted path "
                          "inside one)")
    order = [None, *sorted(used)]
    return [(1.0 if key is None else float(lr_mult[key]), groups[key]) for key in order
            if groups.get(key)]
