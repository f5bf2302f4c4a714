"""Pictures of what the best trials predict, for tasks that can draw them (dense tasks): a few
validation images, their ground truth, and the post-processed predictions of the best trials,
written as ``RUN_DIR/predictions.png`` and shown in the report."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nastk.core.objective import Objective
from nastk.core.trial import Trial
from nastk.data.loaders import make_loader, split_batch
from nastk.run.layout import PREDICTIONS_PNG, trial_checkpoint_name
from nastk.task.contract import Task

__all__ = ["draw_best_predictions", "save_image_grid"]


def save_image_grid(fig: Any, axes: Any, titles: Sequence[str], path: str | Path,
                    dpi: int = 110, fontsize: int = 8) -> Path:
    """Finish a task's picture grid (column ``titles`` on the first row, no ticks), write it to
    the PNG ``path`` (folders created) and close the figure."""
    import matplotlib.pyplot as plt

    for j, title in enumerate(titles):
        axes[0, j].set_title(title, fontsize=fontsize)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def draw_best_predictions(task: Task | None, evaluator: Any, trials: Sequence[Trial],
                          objective: Objective, run_dir: Path, checkpoint_dir: Path | None,
                          *, k: int = 3, n_images: int = 4, split: str = "val") -> Path | None:
    """Draw the ``k`` best trials' predictions on ``n_images`` images of ``split``; ``None``
    when the task draws nothing, the evaluator cannot predict (``evaluator.predict(arch,
    inputs, checkpoint)``), or no best trial has weights to predict with. A drawing that fails
    is reported on stderr and skipped: it never fails the run."""
    if task is None or type(task).draw_predictions is Task.draw_predictions:
        return None
    (Path(run_dir) / PREDICTIONS_PNG).unlink(missing_ok=True)  # never a stale picture
    predict = getattr(evaluator, "predict", None)
    best = objective.ranked(trials, key=lambda t: objective.value(t.result)
                            if t.result is not None else None)[:k]
    if predict is None or not best:
        return None
    try:
        dataset = task.splits()[split]
        x, y = split_batch(next(iter(make_loader(task, dataset, n_images))))
        drawn: list[tuple[str, Any]] = []
        for t in best:
            ckpt = (checkpoint_dir / trial_checkpoint_name(t.id) if checkpoint_dir is not None
                    else None)
            try:
                out = predict(t.arch, x, ckpt)
            except FileNotFoundError:  # a trial whose weights were not kept
                continue
            value = t.result.value(objective.metric) if t.result is not None else None
            label = f"trial {t.id}" + (f": {objective.metric} {value:.3f}"
                                       if value is not None else "")
            drawn.append((label, task.postprocess(out)))
        if not drawn:
            return None
        return task.draw_predictions(x, y, drawn, Path(run_dir) / PREDICTIONS_PNG)
    except Exception as err:  # a picture must not cost the run
        print(f"note: could not draw the best trials' predictions: {type(err).__name__}: {err}",
              file=sys.stderr)
        return None
