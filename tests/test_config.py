"""Bad configs fail before anything is written, with the field path and the fix."""

import pytest
import yaml

from nastk.cli.main import main
from nastk.config.compose import build_components
from nastk.config.schema import load_config, parse_config
from nastk.core.errors import ConfigError

GOOD = {
    "name": "t", "space": "small_cnn", "task": {"name": "classification"},
    "strategy": {"name": "evolution", "options": {"population": 4}},
    "budget": {"trials": 2},
}


def with_(**changes):
    cfg = {**GOOD, **changes}
    return {k: v for k, v in cfg.items() if v is not None}


def test_good_config_parses_with_defaults():
    cfg = parse_config(GOOD)
    assert cfg.strategy.name == "evolution" and cfg.strategy.options == {"population": 4}
    assert cfg.space.name == "small_cnn" and cfg.evaluator.kind == "train"
    assert str(cfg.resolved_run_dir()) == "runs/t"


@pytest.mark.parametrize("changes, message", [
    ({"budget": {"trials": -3}}, "budget.trials: Input should be greater than 0 (got -3)"),
    ({"strategi": "random"}, "strategi: unknown field"),
    ({"budget": {"trials": 2, "epochs": 3}}, "budget.epochs: unknown field"),
    ({"evaluator": {"kind": "function"}}, "needs `function: module:attr`"),
    ({"evaluator": {"kind": "magic"}},
     "evaluator.kind: Input should be 'train', 'function' or 'supernet'"),
    ({"evaluator": {"train": {"lr": "fast"}}}, "evaluator.train.lr: Input should be a valid"),
    ({"task": None}, "needs a `task`"),
    ({"objective": {"costs": ["energy"]}}, "objective.costs.0: Input should be 'params'"),
])
def test_schema_errors_name_the_field(changes, message):
    with pytest.raises(ConfigError) as err:
        parse_config(with_(**changes), "exp.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("exp.yaml: ")


@pytest.mark.parametrize("changes, message", [
    ({"strategy": "evo"}, "unknown strategy 'evo'; registered: bo, bohb, evolution, "
     "nsga2, optuna, path_filter_search, predictor_guided, random, rl"),
    ({"space": "resnet9000"}, "unknown search space 'resnet9000'; registered:"),
    ({"strategy": {"name": "evolution", "options": {"population": "many"}}},
     "strategy.options.population: Input should be a valid integer"),
    ({"strategy": {"name": "evolution", "options": {"popsize": 3}}},
     "strategy.options.popsize: unknown field; check its spelling against the documented "
     "fields (known: population, sample_size, mutation_prob, crossover_prob)"),
    ({"plugins": ["no_such_module_xyz"]}, "plugins: cannot import 'no_such_module_xyz'"),
])
def test_plugin_errors_name_the_plugin_and_options(changes, message):
    with pytest.raises(Exception) as err:
        build_components(parse_config(with_(**changes)))
    assert message in str(err.value)


def test_yaml_errors(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("space: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_cli_bad_config_exits_2_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(with_(run_dir=str(run_dir),
                                      strategy={"name": "evolution",
                                                "options": {"population": 0}})))
    assert main(["search", str(p), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "strategy.options.population" in err and "greater than" in err
    assert not run_dir.exists()


def test_a_union_fields_errors_speak_as_one():
    from typing import Literal

    from pydantic import BaseModel, ConfigDict, Field

    from nastk.core.options import validate_options

    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid")
        rate: float = Field(0.5, le=1.0)

    class Options(BaseModel):
        mode: Literal["default", "off"] | Inner = "default"
        size: int | tuple[int, int] = 8

    def message(options):
        with pytest.raises(ConfigError) as err:
            validate_options(Options, options, what="task 'x'")
        return str(err.value)

    # a word no member takes: every member's expectation, in one line, no pydantic tags
    text = message({"mode": "sometimes"})
    assert "mode: Input should be 'default' or 'off'; or input should be a valid dictionary" \
        in text and "literal[" not in text and "function-after" not in text
    assert "(got 'sometimes')" in text and len(text.splitlines()) == 2
    # a mapping meant for the model: only what is wrong inside it
    text = message({"mode": {"rate": 2}})
    assert text.splitlines()[1].strip() == "mode.rate: Input should be less than or equal to 1 " \
                                           "(got 2)"
    text = message({"size": "big"})
    assert "size: Input should be a valid integer" in text and "valid tuple" in text
    assert "tuple[int, int]" not in text
