import pytest

from suite.registry import SYSTEMS, TASKS, Registry, RegistryError
from suite.spec import RunSpec


def test_unknown_name_suggests_close_matches():
    with pytest.raises(RegistryError, match="did you mean 'humaneval'"):
        TASKS.get("humaneva")


def test_duplicate_registration_fails():
    reg = Registry("thing", "repro.test-nothing")
    with pytest.raises(RegistryError, match="no things are registered"):
        reg.get("a")
    reg.register("a", "os:path")
    with pytest.raises(RegistryError, match="registered twice"):
        reg.register("a", "os:sep")
    reg.register("b", "os:sep")
    assert reg.get("b") == __import__("os").sep


def test_builtins_resolve_lazily():
    assert SYSTEMS.get("oracle").__name__ == "OracleSystem"


def test_builtins_come_from_the_entry_points_a_third_party_uses():
    from importlib import metadata

    groups = {g: {ep.name for ep in metadata.entry_points(group=g)} for g in ("repro.tasks", "repro.systems")}
    assert {"humaneval", "topv2", "imagenet", "coco_detection"} <= groups["repro.tasks"]
    assert set(TASKS.names()) == groups["repro.tasks"]
    assert set(SYSTEMS.names()) == groups["repro.systems"]


@pytest.mark.parametrize("registry", [TASKS, SYSTEMS], ids=["tasks", "systems"])
def test_every_registered_name_imports(registry):
    for name in registry.names():
        assert callable(registry.get(name)), name


def test_spec_hash_covers_every_field():
    base = RunSpec.make("topv2", "layerskip-self-spec", "mini", limit=10, params={"exit_layer": 2, "num_speculations": 4})
    variants = [
        RunSpec.make("topv2", "layerskip-self-spec", "mini", limit=11, params={"exit_layer": 2, "num_speculations": 4}),
        RunSpec.make("topv2", "layerskip-self-spec", "mini", limit=10, params={"exit_layer": 3, "num_speculations": 4}),
        RunSpec.make("topv2", "layerskip-self-spec", "smoke", limit=10, params={"exit_layer": 2, "num_speculations": 4}),
        RunSpec.make("topv2", "layerskip-self-spec", "mini", limit=10, seed=1, params={"exit_layer": 2, "num_speculations": 4}),
        RunSpec.make("topv2", "layerskip-self-spec", "mini", limit=10, task_args={"domains": ["weather"]},
                     params={"exit_layer": 2, "num_speculations": 4}),
    ]
    assert len({base.hash, *[v.hash for v in variants]}) == 6
    same = RunSpec.make("topv2", "layerskip-self-spec", "mini", limit=10, params={"num_speculations": 4, "exit_layer": 2})
    assert same.hash == base.hash
    assert RunSpec.from_json(base.to_json()) == base
    assert hash(base) == hash(same)  # frozen and hashable
