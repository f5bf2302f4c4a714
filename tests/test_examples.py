"""The README's tutorial code is the shipped example, and the shipped configs are valid."""

import re
import sys
from pathlib import Path

import pytest

from nastk.cli.main import main
from nastk.config.compose import build_components, build_supernet_model
from nastk.config.schema import SupernetConfig, load_config
from nastk.run.layout import SUPERNET_CHECKPOINT
from nastk.run.sqlite_store import RunStore
from nastk.training.distill import DistillConfig

ROOT = Path(__file__).resolve().parents[1]


def test_readme_tutorial_is_examples_my_spaces():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert (ROOT / "examples" / "my_spaces.py").read_text() in blocks


OTHER_EXAMPLES = {"supernet_train.yaml", "supernet_search.yaml", "segmentation_kd.yaml",
                  "saliency_supernet.yaml", "saliency_search.yaml",
                  "detofa.yaml", "detofa_ofa.yaml", "salnas_recipe.yaml",
                  "study.yaml", "study_tasks.yaml", "study_latency.yaml", "latency_search.yaml",
                  "aicsd_deeplab.yaml", "tnb101_sources.yaml",
                  "warm_start.yaml"}  # own tests, recipes, studies, distillations
SEARCH_EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.yaml")
                         if p.name not in OTHER_EXAMPLES)


@pytest.mark.parametrize("name", SEARCH_EXAMPLES)
def test_example_configs_build(name, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    cfg = load_config(ROOT / "examples" / name)
    comps = build_components(cfg)
    arch = comps.strategy.ask(1)[0]
    assert comps.space.is_valid(arch)


def test_supernet_examples_fit_together():
    """The search example reads the checkpoint the training example writes, for the same
    space and task, so running the two README commands in order works."""
    train = load_config(ROOT / "examples" / "supernet_train.yaml", SupernetConfig)
    search = load_config(ROOT / "examples" / "supernet_search.yaml")
    assert search.evaluator.kind == "supernet"
    assert search.evaluator.supernet.checkpoint == train.resolved_run_dir() / SUPERNET_CHECKPOINT
    assert search.space == train.space and search.task == train.task
    model = build_supernet_model(train)
    assert model.space.is_valid(model.space.largest())
    assert train.training.total_epochs > 0 and train.training.sampling == "sandwich"


def test_latency_example_fits_the_supernet_example():
    """examples/latency_search.yaml searches the supernet examples/supernet_train.yaml writes,
    with the table `nastk latency profile` writes for it (its README commands, in order)."""
    train = load_config(ROOT / "examples" / "supernet_train.yaml", SupernetConfig)
    search = load_config(ROOT / "examples" / "latency_search.yaml")
    assert search.evaluator.supernet.checkpoint == train.resolved_run_dir() / SUPERNET_CHECKPOINT
    assert search.space == train.space and search.task == train.task
    assert search.latency is not None and "latency_ms" in search.objective.costs
    assert search.constraints["latency_ms"][1] is not None
    assert search.strategy.name == "nsga2"


def test_detofa_recipe_example_is_valid():
    """Every stage of the DetOFA recipe validates (references, schemas, plugin options) and its
    chain is the issue's: classification pretraining, detection supernet from it, sampled
    paths, filter, pruned fine-tuning, pruned NSGA-II search, front export."""
    from nastk.cli.commands.recipe import check_stage
    from nastk.pipelines.recipe import load_recipe

    plan = load_recipe(ROOT / "examples" / "detofa.yaml", check_stage)
    kinds = [(s.name, s.kind) for s in plan.recipe.stages]
    assert kinds == [("pretrain", "supernet_train"), ("supernet", "supernet_train"),
                     ("sample", "search"), ("filter", "path_filter_fit"),
                     ("finetune", "supernet_train"), ("search", "search"),
                     ("export", "export")]
    raw = dict(zip([n for n, _ in kinds], plan.raw, strict=True))
    assert raw["pretrain"]["config"]["task"]["name"] == "classification"
    assert raw["supernet"]["config"]["training"]["init"]["from"] == "${pretrain.checkpoint}"
    assert raw["finetune"]["config"]["path_filter"]["file"] == "${filter.file}"
    assert raw["search"]["config"]["path_filter"]["file"] == "${filter.file}"
    assert raw["search"]["config"]["task"]["name"] == "detection"


def test_salnas_recipe_example_is_valid():
    """The saliency pipeline written as a recipe: its supernet stage reads the supernet example
    file, and its search scores that stage's checkpoint with the same space and task."""
    from nastk.cli.commands.recipe import check_stage
    from nastk.pipelines.recipe import load_recipe

    plan = load_recipe(ROOT / "examples" / "salnas_recipe.yaml", check_stage)
    assert [s.kind for s in plan.recipe.stages] == ["supernet_train", "search", "export"]
    supernet, search = plan.raw[0]["config"], plan.raw[1]["config"]
    assert supernet["run_dir"] == "runs/salnas/supernet"  # the recipe owns the stage folders
    assert supernet["training"]["self_kd"] == {"alpha": 0.5, "schedule": "progressive"}
    assert search["task"] == supernet["task"]
    assert search["evaluator"]["supernet"]["checkpoint"] == "${supernet.checkpoint}"


@pytest.mark.slow
def test_custom_space_tutorial_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.delitem(sys.modules, "my_spaces", raising=False)
    code = main(["search", str(ROOT / "examples" / "custom_space.yaml"), "--run-dir",
                 str(tmp_path / "run"), "--trials", "3", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    with RunStore.open_existing(tmp_path / "run") as st:
        trials = st.finished()
    assert len(trials) == 3 and all(t.result.ok for t in trials)
    assert all(t.result.metrics["accuracy"] > 0.1 for t in trials)


def test_distill_example_reads_the_rl_example():
    """segmentation_kd.yaml distils the best architecture of segmentation_rl.yaml's run, on
    the same task, and its loss terms are ones the task offers."""
    rl = load_config(ROOT / "examples" / "segmentation_rl.yaml")
    kd = load_config(ROOT / "examples" / "segmentation_kd.yaml", DistillConfig)
    assert kd.student.arch_from == rl.resolved_run_dir()
    assert kd.teacher.arch_from == rl.resolved_run_dir()
    assert kd.task == rl.task and kd.student.space == rl.space
    from nastk.core import registry

    task = registry.instantiate(registry.TASKS, kd.task.name, kd.task.options)
    assert set(kd.losses) <= set(task.kd_losses()) and len(kd.seeds) >= 3
