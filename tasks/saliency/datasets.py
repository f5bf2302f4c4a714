"""Loaders for local copies of real saliency data sets (nothing is downloaded).

Every loader is a :class:`~nastk.data.folders.FolderDataset` of ``(image, target)`` pairs:
``image`` a ``float32`` tensor ``[3, H, W]`` in [0, 1]; ``target`` a dict with

- ``"density"``: ``float32 [Hg, Wg]``, the ground-truth fixation density map as stored on disk
  (an 8-bit grey map divided by 255; not sum-normalised);
- ``"fixations"``: ``int64 [k, 2]`` of 0-based ``(row, col)`` pixel indices at the density
  map's resolution (``k`` differs per image and may be 0).

``size`` (an int for a square, or ``(height, width)``) resizes the image (bilinear,
antialiased); the target keeps the ORIGINAL ground-truth resolution unless ``target_size`` is
given, in which case the density map is resized the same way and the fixations are moved to
the pixel that holds the same point (:func:`rescale_fixations`). ``transform(image, target)``
runs last (e.g. :class:`nastk.data.flips.RandomHFlip`, which mirrors the fixations too).

- :class:`SALICON`: the 2017 release (``images/``, ``maps/``, ``fixations/*.mat``) or the 2015
  JSON fixations;
- :class:`MIT1003`: ``ALLSTIMULI/`` + ``ALLFIXATIONMAPS/``, a seeded train / val holdout;
- :class:`CAT2000`: the training set (``trainSet/Stimuli|FIXATIONMAPS|FIXATIONLOCS``), a seeded
  holdout per category.

Coordinates on disk are 1-based (MATLAB); every point is turned into a 0-based pixel index by
rounding to the nearest pixel: ``index = floor(coordinate + 0.5) - 1``. Points on the last
row / column are kept; points off the image (index < 0 or >= the size) and non-finite points
are dropped, as they name no pixel.

The folder structure is checked when a data set is created (a :class:`DatasetError` names the
wrong path and shows the expected layout); file contents are checked as each item is read (a
:class:`DatasetError` names the file). :func:`load_dataset` picks a loader by name.
"""

from __future__ import annotations

import json
import math
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from nastk.data.folders import DatasetError, FolderDataset, Transform, loader_named
from nastk.data.images import Size, check_size, from_levels, read_grey

__all__ = [
    "CAT2000",
    "DATASETS",
    "MIT1003",
    "SALICON",
    "DatasetError",
    "SaliencyFolder",
    "load_dataset",
    "one_based_to_index",
    "rescale_fixations",
]

Target = dict[str, torch.Tensor]

#: MIT1003 ``_fixPts.jpg`` pixels brighter than this are fixations (the points are white on
#: black, stored as JPEG, so compression blurs their edges)
FIXPTS_THRESHOLD = 127


def one_based_to_index(rows: np.ndarray, cols: np.ndarray,
                       shape: tuple[int, int]) -> np.ndarray:
    """``int64 [k, 2]`` 0-based ``(row, col)`` indices of 1-based coordinates, rounded to the
    nearest pixel; points off an image of ``shape`` (H, W), or not finite, are dropped."""
    rows = np.asarray(rows, dtype=np.float64).ravel()
    cols = np.asarray(cols, dtype=np.float64).ravel()
    ok = np.isfinite(rows) & np.isfinite(cols)
    r = np.floor(rows[ok] + 0.5).astype(np.int64) - 1
    c = np.floor(cols[ok] + 0.5).astype(np.int64) - 1
    inside = (r >= 0) & (r < shape[0]) & (c >= 0) & (c < shape[1])
    return np.stack([r[inside], c[inside]], axis=1)


def rescale_fixations(fixations: np.ndarray | torch.Tensor, from_shape: tuple[int, int],
                      to_shape: tuple[int, int]) -> np.ndarray | torch.Tensor:
    """Move 0-based ``(row, col)`` indices from a ``from_shape`` grid to a ``to_shape`` grid:
    each goes to the pixel holding its pixel centre, ``floor((i + 0.5) * new / old)`` (the
    same geometry as an ``align_corners=False`` resize). Duplicates are kept."""
    is_tensor = isinstance(fixations, torch.Tensor)
    f = fixations.numpy() if is_tensor else np.asarray(fixations)
    f = f.reshape(-1, 2).astype(np.float64)
    scale = np.array([to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]])
    out = np.floor((f + 0.5) * scale).astype(np.int64)
    out = np.minimum(np.maximum(out, 0), np.array(to_shape, dtype=np.int64) - 1)
    return torch.from_numpy(out) if is_tensor else out


def _binary_points(mask: np.ndarray) -> np.ndarray:
    """``int64 [k, 2]`` ``(row, col)`` of the nonzero pixels of a 2-D map, row-major order."""
    return np.argwhere(mask).astype(np.int64).reshape(-1, 2)


def _loadmat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat  # scipy comes with scikit-learn

    if not path.is_file():
        raise OSError(f"no such file: {path}")
    try:
        return loadmat(str(path))
    except NotImplementedError as err:  # MATLAB v7.3 (HDF5) files
        raise ValueError(f"{err} (save it as MATLAB v7 or older, e.g. save(..., '-v7'))") from None
    except Exception as err:  # scipy raises many kinds on a corrupt file (IndexError, ...)
        raise ValueError(f"not a readable MATLAB file ({type(err).__name__}: {err})") from None


class _Item(NamedTuple):
    image: Path
    density: Path
    #: the fixation file (.mat / points image), or None where they come from a JSON file
    fixations: Path | None


class SaliencyFolder(FolderDataset):
    """Shared logic of the saliency folder loaders: the items (image, density map, fixation
    file), reading the density and the fixations, and the target's resolution (reading and
    resizing the image and the folder errors are :class:`~nastk.data.folders.FolderDataset`'s).

    A subclass sets :attr:`layout` (the expected folder tree, shown in errors) and
    :attr:`splits`, returns the items of ``self.split`` from :meth:`_find_items` and reads an
    item's fixations in :meth:`_read_fixations`.
    """

    splits: ClassVar[tuple[str, ...] | None] = ("train", "val")

    def __init__(self, root: str | Path, split: str = "train", size: Size | None = None,
                 transform: Transform | None = None, target_size: Size | None = None) -> None:
        self.target_size = check_size(target_size, "target_size")
        super().__init__(root, split, size, transform)

    # -- to be provided by subclasses ---------------------------------------------------------
    @abstractmethod
    def _find_items(self) -> list[_Item]:
        """The items of ``self.split``, in a stable order."""

    @abstractmethod
    def _read_fixations(self, item: _Item, shape: tuple[int, int]) -> np.ndarray:
        """``int64 [k, 2]`` 0-based ``(row, col)`` of ``item`` on a density map of ``shape``."""

    # -- helpers ------------------------------------------------------------------------------
    def _repr_fields(self) -> dict[str, Any]:
        return {"target_size": self.target_size, "items": len(self.items)}

    def _read_mat(self, path: Path) -> dict[str, Any]:
        return self._read(_loadmat, path, "MATLAB file")

    def _mat_field(self, mat: dict[str, Any], name: str, path: Path) -> Any:
        """The variable ``name`` of the loaded MATLAB file ``path`` (a DatasetError if absent)."""
        if name not in mat:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise self._error(f"MATLAB file has no variable {name!r} (it holds {found}):", path)
        return mat[name]

    def _sample(self, item: _Item) -> tuple[torch.Tensor, Target]:
        x = self._read_image(item.image)
        density = self._read(read_grey, item.density, "density map")
        shape = (int(density.shape[0]), int(density.shape[1]))
        fix = np.asarray(self._read_fixations(item, shape), dtype=np.int64).reshape(-1, 2)
        # float in [0, 1], its uint8 levels kept beside it (a loader worker sends those)
        d = from_levels(torch.from_numpy(np.ascontiguousarray(density)))
        if self.target_size is not None and shape != self.target_size:
            d = F.interpolate(d[None, None], size=self.target_size, mode="bilinear",
                              align_corners=False, antialias=True)[0, 0].clamp_(min=0.0)
            fix = rescale_fixations(fix, shape, self.target_size)
        target = {"density": d, "fixations": torch.from_numpy(np.ascontiguousarray(fix))}
        return self._resized(x), target


class SALICON(SaliencyFolder):
    """SALICON (images from MS-COCO 2014, 640 x 480): mouse-tracking fixations.

    ``images/<split>/<name>.jpg`` with the density ``maps/<split>/<name>.png`` (grey 0..255)
    and the fixations from either source (``fixations="auto"`` picks the ``.mat`` folder when
    it exists, else the JSON file):

    - ``"mat"`` (the 2017 release): ``fixations/<split>/<name>.mat`` with ``gaze``, a struct
      array of one element per observer (n x 1, or 1 x n in older files), whose field
      ``fixations`` is an ``M x 2`` matrix of **1-based [x, y]**; the points are given at the
      resolution of the variable ``resolution`` (``[[H, W]]``, default: the map's) and rescaled
      to the density map's when it differs;
    - ``"json"`` (the 2015 release): ``fixations_<split>2014.json`` (or ``...2015.json``) in
      ``annotations/`` or the root, or the file ``json_file``; COCO-style, ``images[{id,
      file_name, width, height}]`` and ``annotations[{image_id, worker_id, fixations}]`` with
      ``fixations`` a list of **1-based [y, x]** (row first: the reverse of the ``.mat``); the
      workers' points of an image are pooled.
    """

    layout = """
root/
├── images/{train,val}/COCO_train2014_000000000009.jpg ...
├── maps/{train,val}/COCO_train2014_000000000009.png      (grey density map, 0..255)
├── fixations/{train,val}/COCO_train2014_000000000009.mat (2017: variables image,
│       resolution [[H, W]], gaze = struct array, one per observer, field fixations
│       M x 2 of 1-based [x, y])
└── annotations/fixations_{train,val}2014.json            (2015, instead of fixations/:
        {"images": [{"id", "file_name", "width", "height"}],
         "annotations": [{"image_id", "worker_id", "fixations": [[y, x], ...]}]}, 1-based)
"""

    def __init__(self, root: str | Path, split: str = "train", size: Size | None = None,
                 transform: Transform | None = None, target_size: Size | None = None, *,
                 fixations: str = "auto", json_file: str | Path | None = None) -> None:
        if fixations not in ("auto", "mat", "json"):
            raise ValueError(f"SALICON: fixations must be 'auto', 'mat' or 'json', "
                             f"got {fixations!r}")
        self.fixation_source = fixations
        self.json_file = None if json_file is None else Path(json_file).expanduser()
        #: JSON mode: image file name -> (1-based [y, x] points [m, 2], (H, W) or None)
        self._json: dict[str, tuple[np.ndarray, tuple[int, int] | None]] = {}
        self._json_path: Path | None = None
        super().__init__(root, split, size, transform, target_size)

    def _image_dir(self) -> Path:
        return self.root / "images" / self.split

    def _json_candidates(self) -> list[Path]:
        if self.json_file is not None:
            return [self.json_file]
        names = [f"fixations_{self.split}2014.json", f"fixations_{self.split}2015.json"]
        return [d / n for d in (self.root / "annotations", self.root) for n in names]

    def _find_items(self) -> list[_Item]:
        images, maps = self._image_dir(), self.root / "maps" / self.split
        self._require_dir(images)
        self._require_dir(maps)
        mat_dir = self.root / "fixations" / self.split
        source = self.fixation_source
        if source == "auto":
            json_found = any(p.is_file() for p in self._json_candidates())
            source = "mat" if mat_dir.is_dir() or not json_found else "json"
        paths = sorted(images.glob("*.jpg"))
        if source == "mat":
            extra = "" if self.fixation_source == "mat" else (
                f" (nor a 2015 JSON fixation file {self._json_candidates()[0].name})")
            self._require_dir(mat_dir, f"missing folder{extra}")
            items = [_Item(p, maps / f"{p.stem}.png", mat_dir / f"{p.stem}.mat") for p in paths]
        else:
            self._load_json()
            items = [_Item(p, maps / f"{p.stem}.png", None) for p in paths]
        self.fixation_source = source  # "mat" or "json" from here on
        for item in items:
            self._require_file(item.image, item.density, "density map")
            if item.fixations is not None:
                self._require_file(item.image, item.fixations, "fixation file")
            elif item.image.name not in self._json:
                raise self._error(f"image {item.image.name} has no entry in the fixation "
                                  "file's 'images' list:", Path(str(self._json_path)))
        return items

    def _load_json(self) -> None:
        found = [p for p in self._json_candidates() if p.is_file()]
        if not found:
            raise self._error("missing fixation file:", self._json_candidates()[0])
        path = self._json_path = found[0]

        def bad(problem: str) -> DatasetError:
            return self._error(f"malformed fixation file ({problem}):", path)

        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise bad(f"not readable as JSON: {err}") from None
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
                or not isinstance(data.get("annotations"), list):
            raise bad("expected an object with the lists 'images' and 'annotations'")
        names: dict[Any, str] = {}
        shapes: dict[Any, tuple[int, int] | None] = {}
        for entry in data["images"]:
            if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
                raise bad(f"an 'images' entry lacks 'id' or 'file_name': {entry!r:.120}")
            names[entry["id"]] = Path(str(entry["file_name"])).name
            h, w = entry.get("height"), entry.get("width")
            if h is None or w is None:
                shapes[entry["id"]] = None
            elif isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
                shapes[entry["id"]] = (h, w)
            else:
                raise bad(f"an 'images' entry has a bad height / width: {entry!r:.120}")
        points: dict[Any, list[np.ndarray]] = {i: [] for i in names}
        for ann in data["annotations"]:
            if not isinstance(ann, dict) or "image_id" not in ann or "fixations" not in ann:
                raise bad(f"an 'annotations' entry lacks 'image_id' or 'fixations': "
                          f"{ann!r:.120}")
            if ann["image_id"] not in names:
                raise bad(f"an annotation names the unknown image_id {ann['image_id']!r}")
            try:
                arr = np.asarray(ann["fixations"], dtype=np.float64)
            except (TypeError, ValueError):
                arr = None
            if arr is None or (arr.size and (arr.ndim != 2 or arr.shape[1] != 2)):
                raise bad(f"the fixations of image_id {ann['image_id']!r} are not a list of "
                          f"[y, x] pairs: {ann['fixations']!r:.120}")
            points[ann["image_id"]].append(arr.reshape(-1, 2))
        self._json = {names[i]: (np.concatenate(p) if p else np.zeros((0, 2)), shapes[i])
                      for i, p in points.items()}

    def _read_fixations(self, item: _Item, shape: tuple[int, int]) -> np.ndarray:
        if item.fixations is None:  # 2015 JSON: [y, x], 1-based
            pts, frame = self._json[item.image.name]
            frame = frame or shape
            fix = one_based_to_index(pts[:, 0], pts[:, 1], frame)
        else:  # 2017 .mat: gaze(i).fixations, [x, y], 1-based
            path = item.fixations
            mat = self._read_mat(path)
            gaze = self._mat_field(mat, "gaze", path)
            if not (isinstance(gaze, np.ndarray) and gaze.dtype.names
                    and "fixations" in gaze.dtype.names):
                fields = list(gaze.dtype.names or ()) if isinstance(gaze, np.ndarray) else []
                raise self._error("'gaze' is not a struct array with the field 'fixations' "
                                  f"(fields: {fields}):", path)
            chunks = []
            for k, observer in enumerate(gaze.ravel()):
                pts = np.asarray(observer["fixations"])
                if pts.size == 0:
                    continue
                if pts.ndim != 2 or pts.shape[1] != 2 or not np.issubdtype(pts.dtype,
                                                                           np.number):
                    raise self._error(f"gaze({k + 1}).fixations is not an M x 2 matrix of "
                                      f"[x, y] (shape {pts.shape}, dtype {pts.dtype}):", path)
                chunks.append(pts.astype(np.float64))
            pts = np.concatenate(chunks) if chunks else np.zeros((0, 2))
            frame = self._mat_resolution(mat, path) or shape
            fix = one_based_to_index(pts[:, 1], pts[:, 0], frame)
        if frame != shape:
            fix = rescale_fixations(fix, frame, shape)
        return fix

    def _mat_resolution(self, mat: dict[str, Any], path: Path) -> tuple[int, int] | None:
        if "resolution" not in mat:
            return None
        res = np.asarray(mat["resolution"]).ravel()
        if res.size != 2 or not np.issubdtype(res.dtype, np.number) or (res <= 0).any():
            raise self._error(f"'resolution' must be [[H, W]], got {res.tolist()}:", path)
        return int(res[0]), int(res[1])


def _holdout(count: int, split: str, fraction: float, seed: int) -> np.ndarray:
    """Indices ``0..count-1`` of ``split`` in a seeded holdout: a permutation of
    ``default_rng(seed)``, whose first ``floor(count * fraction)`` are ``val``; sorted."""
    if split == "all":
        return np.arange(count)
    order = np.random.default_rng(seed).permutation(count)
    n_val = math.floor(count * fraction)
    chosen = order[:n_val] if split == "val" else order[n_val:]
    return np.sort(chosen)


class _HoldoutFolder(SaliencyFolder):
    """A data set without an official split: ``train`` / ``val`` are a seeded holdout."""

    splits = ("train", "val", "all")

    def __init__(self, root: str | Path, split: str = "train", size: Size | None = None,
                 transform: Transform | None = None, target_size: Size | None = None, *,
                 val_fraction: float = 0.2, split_seed: int = 42) -> None:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"{type(self).__name__}: val_fraction must be in [0, 1), "
                             f"got {val_fraction}")
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)
        super().__init__(root, split, size, transform, target_size)

    def _points_map(self, item: _Item, points: np.ndarray, shape: tuple[int, int],
                    what: str) -> np.ndarray:
        if points.ndim != 2 or tuple(points.shape) != shape:
            raise DatasetError(f"{type(self).__name__}: the {what} {item.fixations} is "
                               f"{'x'.join(map(str, points.shape))} but the density map "
                               f"{item.density} is {shape[0]}x{shape[1]} (height x width)")
        return points


class MIT1003(_HoldoutFolder):
    """MIT1003 (Judd et al.): 1003 images, eye-tracking fixations of 15 observers.

    ``ALLSTIMULI/<name>.jpeg`` with the density ``ALLFIXATIONMAPS/<name>_fixMap.jpg`` and the
    fixation points ``ALLFIXATIONMAPS/<name>_fixPts.jpg`` (white points on black stored as
    JPEG: a pixel brighter than :data:`FIXPTS_THRESHOLD` = 127 is a fixation). There is no
    official split: ``train`` / ``val`` are a seeded holdout, the first
    ``floor(n * val_fraction)`` of ``numpy.random.default_rng(split_seed).permutation(n)`` over
    the sorted names being ``val`` (803 / 200 for the full set at the defaults 0.2 and 42);
    ``all`` is every image.
    """

    layout = """
root/
├── ALLSTIMULI/i05june05_static_street_boston_p1010764.jpeg ...
└── ALLFIXATIONMAPS/i05june05_static_street_boston_p1010764_fixMap.jpg  (grey density)
                    i05june05_static_street_boston_p1010764_fixPts.jpg  (fixations: pixels
                                                                        > 127 on black)
"""

    def _image_dir(self) -> Path:
        return self.root / "ALLSTIMULI"

    def _find_items(self) -> list[_Item]:
        images, maps = self._image_dir(), self.root / "ALLFIXATIONMAPS"
        self._require_dir(images)
        self._require_dir(maps)
        paths = sorted(p for p in images.iterdir()
                       if p.is_file() and p.suffix.lower() in (".jpeg", ".jpg"))
        items = [_Item(p, maps / f"{p.stem}_fixMap.jpg", maps / f"{p.stem}_fixPts.jpg")
                 for p in paths]
        for item in items:
            self._require_file(item.image, item.density, "fixation map")
            self._require_file(item.image, item.fixations, "fixation-points image")
        keep = _holdout(len(items), self.split, self.val_fraction, self.split_seed)
        return [items[i] for i in keep]

    def _read_fixations(self, item: _Item, shape: tuple[int, int]) -> np.ndarray:
        assert item.fixations is not None
        pts = self._read(read_grey, item.fixations, "fixation-points image")
        return _binary_points(self._points_map(item, pts, shape, "fixation-points image")
                              > FIXPTS_THRESHOLD)


class CAT2000(_HoldoutFolder):
    """CAT2000 training set (Borji & Itti): 20 categories x 100 images, 1920 x 1080.

    ``trainSet/Stimuli/<Category>/<name>.jpg`` with the density
    ``trainSet/FIXATIONMAPS/<Category>/<name>.jpg`` and the fixations
    ``trainSet/FIXATIONLOCS/<Category>/<name>.mat``, whose variable ``fixLocs`` is an H x W
    map, nonzero at fixated pixels. ``root`` is the folder holding ``trainSet`` (or
    ``trainSet`` itself). ``train`` / ``val`` are a seeded holdout *per category* (as
    :class:`MIT1003`, over each category's sorted names; 80 / 20 per category, 1600 / 400,
    at the defaults); ``all`` is every image.
    """

    layout = """
root/
└── trainSet/
    ├── Stimuli/<Category>/001.jpg ...        (e.g. Stimuli/Action/001.jpg)
    ├── FIXATIONMAPS/<Category>/001.jpg ...   (grey density map)
    └── FIXATIONLOCS/<Category>/001.mat ...   (variable fixLocs: H x W, nonzero = fixated)
"""

    def __init__(self, root: str | Path, split: str = "train", size: Size | None = None,
                 transform: Transform | None = None, target_size: Size | None = None, *,
                 val_fraction: float = 0.2, split_seed: int = 42) -> None:
        base = Path(root).expanduser()
        if (base / "trainSet").is_dir() or not (base / "Stimuli").is_dir():
            self._train_dir = base / "trainSet"
        else:  # root is the trainSet folder itself
            self._train_dir = base
        super().__init__(base, split, size, transform, target_size,
                         val_fraction=val_fraction, split_seed=split_seed)

    def _image_dir(self) -> Path:
        return self._train_dir / "Stimuli"

    def _find_items(self) -> list[_Item]:
        self._require_dir(self._train_dir)
        stimuli = self._image_dir()
        maps, locs = self._train_dir / "FIXATIONMAPS", self._train_dir / "FIXATIONLOCS"
        for folder in (stimuli, maps, locs):
            self._require_dir(folder)
        categories = sorted(p for p in stimuli.iterdir() if p.is_dir())
        if not categories:
            raise self._error("no category folders in", stimuli)
        items: list[_Item] = []
        for cat in categories:
            self._require_dir(maps / cat.name)
            self._require_dir(locs / cat.name)
            paths = sorted(p for p in cat.glob("*.jpg") if p.is_file())
            found = [_Item(p, maps / cat.name / p.name, locs / cat.name / f"{p.stem}.mat")
                     for p in paths]
            for item in found:
                self._require_file(item.image, item.density, "fixation map")
                self._require_file(item.image, item.fixations, "fixation file")
            keep = _holdout(len(found), self.split, self.val_fraction, self.split_seed)
            items.extend(found[i] for i in keep)
        return items

    def _read_fixations(self, item: _Item, shape: tuple[int, int]) -> np.ndarray:
        assert item.fixations is not None
        mat = self._read_mat(item.fixations)
        locs = np.asarray(self._mat_field(mat, "fixLocs", item.fixations))
        if not (np.issubdtype(locs.dtype, np.number) or locs.dtype == np.bool_):
            raise self._error(f"'fixLocs' is not a numeric H x W matrix (dtype {locs.dtype}):",
                              item.fixations)
        return _binary_points(self._points_map(item, locs, shape, "fixation file") != 0)


#: loader name -> class
DATASETS: dict[str, type[SaliencyFolder]] = {
    "salicon": SALICON,
    "mit1003": MIT1003,
    "cat2000": CAT2000,
}


def load_dataset(name: str, root: str | Path, split: str = "train", size: Size | None = None,
                 **options: Any) -> SaliencyFolder:
    """The data set ``name`` (``salicon``, ``mit1003`` or ``cat2000``) read from ``root``;
    ``options`` go to the loader (``target_size``, ``transform``, ``fixations``,
    ``val_fraction``, ...)."""
    return loader_named(DATASETS, name, "saliency")(root, split=split, size=size, **options)
