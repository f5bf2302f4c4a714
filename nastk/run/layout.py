"""The run folder's layout: every file and folder name nastk writes into a run folder, in one place.

A *search* run folder (``nastk search``, :func:`nastk.create_search`)::

    RUN_DIR/
      store.sqlite          the run store (trials, meta, the strategy's state)
      .lock                 the run folder's lock (held while a process works on the run)
      report.md             the report, with the plots beside it:
      best_so_far.png  pareto.png  strategy.png  predictions.png
      learning_curves.png   (a scheduled run: each candidate's metric against resource)
      checkpoints/trial_N.pt      trained weights of the best candidates (keep_checkpoints)
      partial/trial_N_rung_K.pt   a scheduled candidate's partial training after rung K
                                  (until its next rung, or its end)
      ray/                  Ray Tune's own files (executor: ray, mode tune)

A *supernet* run folder (``nastk supernet train``)::

    RUN_DIR/
      supernet.pt  history.json  history.png  config.json  init_report.json  .lock
      progress.json  workers.json  failure.json      (data-parallel training on Ray Train)

An *export* folder (``nastk export``): ``arch.json``, ``model.pt``, ``model.pt2``; with
``--front`` a ``front.json`` and one ``trial_N/`` folder per exported trial. A *recipe* folder:
``recipe.json``, ``recipe.yaml``, ``resolved.yaml`` and one folder per stage. A *study* folder:
``report.md``, ``study_curves.png``, ``study.json`` and one run folder per search. A
*distillation* folder: ``distill.json`` and ``report.md``. A path filter fitted by a recipe
stage: ``filter.pt``.

Code names these through the constants and the :class:`RunLayout` helpers below, never as
literals, so that the layout is changed (and documented) here alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ARCH_JSON",
    "BEST_SO_FAR_PNG",
    "CHECKPOINTS_DIR",
    "COMPARE_MD",
    "COMPARE_PNG",
    "CONFIG_JSON",
    "DISTILL_JSON",
    "EXPORT_MODEL",
    "EXPORT_ONNX",
    "EXPORT_PROGRAM",
    "FAILURE_JSON",
    "FILTER_FILE",
    "FRONT_DIR",
    "FRONT_JSON",
    "HISTORY_JSON",
    "HISTORY_PNG",
    "INIT_REPORT_JSON",
    "LEARNING_CURVES_PNG",
    "LOCK_FILE",
    "PARETO_PNG",
    "PARTIAL_DIR",
    "PREDICTIONS_PNG",
    "PROGRESS_JSON",
    "RAY_DIR",
    "RECIPE_COPY",
    "RECIPE_STATE",
    "REPORT_MD",
    "RESOLVED_YAML",
    "STORE_FILE",
    "STRATEGY_PNG",
    "STUDY_CURVES_PNG",
    "STUDY_JSON",
    "SUPERNET_CHECKPOINT",
    "WORKERS_JSON",
    "RunLayout",
    "partial_state_name",
    "partial_state_of",
    "trial_checkpoint_name",
    "trial_folder_name",
    "trial_id_of_checkpoint",
]

# -- a search run -------------------------------------------------------------------------------
#: the run store (SQLite)
STORE_FILE = "store.sqlite"
#: the lock file of a run folder (any kind of run)
LOCK_FILE = ".lock"
#: the markdown report (search, study, distillation)
REPORT_MD = "report.md"
BEST_SO_FAR_PNG = "best_so_far.png"
PARETO_PNG = "pareto.png"
STRATEGY_PNG = "strategy.png"
PREDICTIONS_PNG = "predictions.png"
#: a scheduled run's candidates' metric against resource, rung by rung
LEARNING_CURVES_PNG = "learning_curves.png"
#: trained weights of the kept candidates
CHECKPOINTS_DIR = "checkpoints"
#: a scheduler's candidates' partial trainings between rungs (``partial_state_name``)
PARTIAL_DIR = "partial"
#: Ray Tune's experiment folder
RAY_DIR = "ray"
#: ``nastk export --front``'s default folder inside the run folder
FRONT_DIR = "front"

# -- a supernet run -----------------------------------------------------------------------------
SUPERNET_CHECKPOINT = "supernet.pt"
HISTORY_JSON = "history.json"
HISTORY_PNG = "history.png"
CONFIG_JSON = "config.json"
INIT_REPORT_JSON = "init_report.json"
#: data-parallel training on Ray Train: rank 0's progress, the workers of each session, and
#: the error of the run itself (not a worker's death) that stops restarts
PROGRESS_JSON = "progress.json"
WORKERS_JSON = "workers.json"
FAILURE_JSON = "failure.json"

# -- exports, recipes, studies, distillation, comparisons ---------------------------------------
ARCH_JSON = "arch.json"
EXPORT_MODEL = "model.pt"
EXPORT_PROGRAM = "model.pt2"
EXPORT_ONNX = "model.onnx"
FRONT_JSON = "front.json"
#: a run's front measured on the device its latency table was profiled on
LATENCY_CHECK_JSON = "latency_check.json"
RECIPE_STATE = "recipe.json"
RECIPE_COPY = "recipe.yaml"
RESOLVED_YAML = "resolved.yaml"
FILTER_FILE = "filter.pt"
STUDY_JSON = "study.json"
STUDY_CURVES_PNG = "study_curves.png"
DISTILL_JSON = "distill.json"
COMPARE_MD = "compare.md"
COMPARE_PNG = "compare.png"

_TRIAL_PREFIX = "trial_"


def trial_checkpoint_name(trial_id: int, suffix: str = "") -> str:
    """``trial_N.pt`` (``trial_N<suffix>.pt``: e.g. ``_extracted``, ``_retrained``)."""
    return f"{_TRIAL_PREFIX}{int(trial_id)}{suffix}.pt"


def partial_state_name(trial_id: int, rung: int) -> str:
    """``trial_N_rung_K.pt``: candidate N's partial training after rung K (what rung K + 1
    continues from)."""
    return f"{_TRIAL_PREFIX}{int(trial_id)}_rung_{int(rung)}.pt"


def partial_state_of(path: Path) -> tuple[int, int] | None:
    """``(N, K)`` of ``trial_N_rung_K.pt``; ``None`` for any other file name."""
    p = Path(path)
    parts = p.stem.split("_")
    if (p.suffix != ".pt" or len(parts) != 4 or parts[0] + "_" != _TRIAL_PREFIX
            or parts[2] != "rung" or not parts[1].isdigit() or not parts[3].isdigit()):
        return None
    return int(parts[1]), int(parts[3])


def trial_folder_name(trial_id: int) -> str:
    """``trial_N``: a trial's folder in a front export, its Tune trial name."""
    return f"{_TRIAL_PREFIX}{int(trial_id)}"


def trial_id_of_checkpoint(path: Path) -> int | None:
    """N of ``trial_N.pt``; ``None`` for any other file name."""
    stem = Path(path).stem
    if Path(path).suffix != ".pt" or not stem.startswith(_TRIAL_PREFIX):
        return None
    digits = stem[len(_TRIAL_PREFIX):]
    return int(digits) if digits.isdigit() else None


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def store(self) -> Path:
        return self.root / STORE_FILE

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def report(self) -> Path:
        return self.root / REPORT_MD

    @property
    def best_so_far_png(self) -> Path:
        return self.root / BEST_SO_FAR_PNG

    @property
    def pareto_png(self) -> Path:
        return self.root / PARETO_PNG

    @property
    def learning_curves_png(self) -> Path:
        return self.root / LEARNING_CURVES_PNG

    @property
    def strategy_png(self) -> Path:
        return self.root / STRATEGY_PNG

    @property
    def predictions_png(self) -> Path:
        return self.root / PREDICTIONS_PNG

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    def trial_checkpoint(self, trial_id: int) -> Path:
        """``checkpoints/trial_N.pt``."""
        return self.checkpoints / trial_checkpoint_name(trial_id)

    @property
    def partial(self) -> Path:
        """``partial/``: a scheduler's candidates' partial trainings between rungs."""
        return self.root / PARTIAL_DIR

    def written_folders(self) -> tuple[Path, ...]:
        """The folders nastk writes files into atomically (where a killed write can leave a
        temporary file): the run folder, its checkpoints and partial trainings."""
        return self.root, self.checkpoints, self.partial

    @property
    def ray(self) -> Path:
        return self.root / RAY_DIR

    @property
    def supernet_checkpoint(self) -> Path:
        return self.root / SUPERNET_CHECKPOINT

    @property
    def history(self) -> Path:
        return self.root / HISTORY_JSON

    @property
    def history_png(self) -> Path:
        return self.root / HISTORY_PNG

    @property
    def config_json(self) -> Path:
        return self.root / CONFIG_JSON

    @property
    def init_report(self) -> Path:
        return self.root / INIT_REPORT_JSON

    @property
    def progress(self) -> Path:
        return self.root / PROGRESS_JSON

    @property
    def workers(self) -> Path:
        return self.root / WORKERS_JSON

    @property
    def failure(self) -> Path:
        return self.root / FAILURE_JSON
