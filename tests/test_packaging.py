"""How nastk installs: the built-in plugins live in ``tasks/``, ``search_spaces/`` and
``predictors/`` but install under the project's namespace (``nastk.tasks``, ...), so a user's
own ``tasks.py`` (which the tutorials put on ``PYTHONPATH``) cannot shadow them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: folder -> the package it installs as
MAPPED = {"nastk": "nastk", "tasks": "nastk.tasks", "search_spaces": "nastk.search_spaces",
          "predictors": "nastk.predictors"}


def test_every_package_folder_is_listed_under_its_installed_name():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join([name, *rel]))
    assert listed == found, (f"missing from pyproject.toml: {sorted(found - listed)}; listed "
                             f"but not a package: {sorted(listed - found)}")
    dirs = project["tool"]["setuptools"]["package-dir"]
    assert dirs == {v: k for k, v in MAPPED.items() if k != v}
    groups = project["project"]["entry-points"]
    for group in ("nastk.tasks", "nastk.search_spaces", "nastk.predictors"):
        for name, target in groups[group].items():
            assert target.startswith(group + "."), (group, name, target)


SHADOWS = {
    "tasks.py": "raise ImportError('the user tasks.py was imported instead of nastk.tasks')\n",
    "search_spaces.py": "SPACES = 'a user module named like the old top-level package'\n",
    "predictors.py": "raise ImportError('the user predictors.py was imported')\n",
}


@pytest.mark.slow
def test_a_users_tasks_py_on_the_path_does_not_shadow_the_built_in_plugins(tmp_path):
    """With a ``tasks.py``, ``search_spaces.py`` and ``predictors.py`` of the user's own first
    on ``PYTHONPATH``, a search over a built-in space and task, guided by a built-in predictor,
    runs: every built-in plugin resolves under ``nastk.``."""
    user = tmp_path / "user"
    user.mkdir()
    for name, text in SHADOWS.items():
        (user / name).write_text(text)
    config = {
        "name": "shadowed", "run_dir": str(tmp_path / "run"), "seed": 0,
        "space": {"name": "small_cnn", "options": {"stages": 1}},
        "task": {"name": "classification", "options": {"n_samples": 96, "image_size": 8,
                                                      "num_classes": 3}},
        "strategy": {"name": "predictor_guided",
                     "options": {"predictor": "ridge", "acquisition": "mean", "warmup": 2,
                                 "candidates": 4}},
        "objective": {"metric": "accuracy"},
        "evaluator": {"kind": "train", "train": {"epochs": 1, "batch_size": 32,
                                                 "latency": False}},
        "budget": {"trials": 3}, "keep_checkpoints": 0,
    }
    path = tmp_path / "shadowed.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(user), os.environ.get("PYTHONPATH")) if p))
    check = subprocess.run([sys.executable, "-c", "import tasks"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert "the user tasks.py was imported" in check.stderr  # the shadow is really first
    done = subprocess.run([sys.executable, "-m", "nastk.cli", "search", str(path),
                           "--no-progress"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "3 trials (0 failed)" in done.stdout + done.stderr
