"""The plugin registries: their error messages, option errors with the config file, the options
table that `nastk list` shows and the kind names it accepts."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from nastk.core import registry
from nastk.core.errors import ConfigError, RegistryError
from nastk.core.registry import (
    PREDICTORS,
    SEARCH_SPACES,
    STRATEGIES,
    TASKS,
    Registry,
    instantiate,
    options_table,
    resolve_kind,
)


@pytest.mark.parametrize("reg, attr", [(SEARCH_SPACES, "SEARCH_SPACES"), (TASKS, "TASKS"),
                                       (STRATEGIES, "STRATEGIES"), (PREDICTORS, "PREDICTORS")])
def test_unknown_plugin_names_the_real_registry_attribute(reg, attr):
    with pytest.raises(RegistryError) as err:
        reg.get("no_such_plugin")
    text = str(err.value)
    assert f"nastk.registry.{attr}.register" in text
    assert getattr(registry, attr) is reg  # the hint names an attribute that exists
    assert "STRATEGYS" not in text


def test_a_registry_carries_its_attribute_name():
    reg: Registry[object] = Registry("widget", "nastk.test_widgets", attr="WIDGETS")
    assert reg.attr == "WIDGETS"
    with pytest.raises(RegistryError, match=r"nastk\.registry\.WIDGETS\.register"):
        reg.get("x")


class Knob:
    """A plugin with pydantic options."""

    class Options(BaseModel, extra="forbid"):
        size: int = Field(3, description="how big")
        mode: Literal["a", "b"] = "a"

    def __init__(self, **options):
        self.options = options


@pytest.fixture
def knob():
    STRATEGIES.register("knob_test", Knob)
    yield
    STRATEGIES.unregister("knob_test")


def test_option_errors_start_with_the_config_file(knob):
    with pytest.raises(ConfigError) as err:
        instantiate(STRATEGIES, "knob_test", {"size": "big"}, where="strategy.options",
                    source="exp.yaml")
    text = str(err.value)
    assert text.startswith("exp.yaml: strategy.options: invalid options for strategy 'knob_test'")
    assert "strategy.options.size" in text


def test_option_errors_without_source_are_unchanged(knob):
    with pytest.raises(ConfigError) as err:
        instantiate(STRATEGIES, "knob_test", {"size": "big"}, where="strategy.options")
    assert str(err.value).startswith("strategy.options: invalid options for strategy")
    with pytest.raises(ConfigError) as err:
        instantiate(STRATEGIES, "knob_test", {"size": "big"})
    assert str(err.value).startswith("invalid options for strategy")


def test_rejected_options_and_unknown_names_name_the_file():
    def plain(size: int = 1):
        return size

    STRATEGIES.register("plain_test", plain)
    try:
        with pytest.raises(ConfigError) as err:
            instantiate(STRATEGIES, "plain_test", {"colour": 1}, where="strategy.options",
                        source="exp.yaml")
        assert str(err.value).startswith("exp.yaml: strategy.options: strategy 'plain_test' "
                                         "rejected options")
        assert instantiate(STRATEGIES, "plain_test", {"size": 4}, source="exp.yaml") == 4
    finally:
        STRATEGIES.unregister("plain_test")
    with pytest.raises(RegistryError) as err:
        instantiate(STRATEGIES, "nope_test", {}, where="strategy", source="exp.yaml")
    assert str(err.value).startswith("exp.yaml: strategy: unknown strategy 'nope_test'")


def test_options_table_from_a_pydantic_options_model():
    rows = options_table(Knob)
    assert rows == [("size", "int", "3", "how big"),
                    ("mode", "Literal['a', 'b']", "'a'", "")]


def test_options_table_of_real_plugins():
    rows = {r[0]: r for r in options_table(STRATEGIES.get("evolution"))}
    assert rows["population"][1:3] == ("int", "20")
    assert rows["mutation_prob"][1:3] == ("float | None", "None")
    assert rows["population"][3]  # described
    space_rows = {r[0]: r for r in options_table(SEARCH_SPACES.get("small_cnn"))}
    assert space_rows["depths"][2].startswith("[")  # a default_factory is called
    # a constrained type shows as its plain type (the constraint is in the description)
    from nastk.evaluation.weight_sharing import WeightSharingConfig

    class Scorer:
        Options = WeightSharingConfig

    rows = {r[0]: r for r in options_table(Scorer)}
    assert rows["num_threads"][1:3] == ("int | Literal['auto'] | None", "'auto'")


def test_options_table_marks_required_options():
    class Need:
        class Options(BaseModel):
            path: str = Field(description="where")

    assert options_table(Need) == [("path", "str", "(required)", "where")]


def test_options_table_without_options_reads_the_signature():
    class Old:
        def __init__(self, space, objective, n: int = 50, *, label: str = "x", flag=None,
                     **rest):
            pass

    def factory(width: int = 16, *args, depth, **kw):
        pass

    assert options_table(Old) == [("n", "int", "50", ""), ("label", "str", "'x'", ""),
                                  ("flag", "", "None", "")]
    assert options_table(factory) == [("width", "int", "16", ""),
                                      ("depth", "", "(required)", "")]


@pytest.mark.parametrize("text, kind", [
    ("spaces", "search spaces"), ("search_spaces", "search spaces"),
    ("search spaces", "search spaces"), ("search-spaces", "search spaces"),
    ("space", "search spaces"), ("tasks", "tasks"), ("task", "tasks"),
    ("strategies", "strategies"), ("strategy", "strategies"), ("Predictors", "predictors"),
])
def test_resolve_kind_accepts_aliases(text, kind):
    assert resolve_kind(text) == kind
    assert kind in registry.ALL


def test_resolve_kind_refuses_others():
    with pytest.raises(ValueError, match="search spaces, tasks, strategies, predictors"):
        resolve_kind("models")
