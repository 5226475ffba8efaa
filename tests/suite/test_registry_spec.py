import pytest

from suite.registry import Registry, RegistryError, SYSTEMS, TASKS
from suite.spec import RunSpec


def test_unknown_name_suggests_close_matches():
    with pytest.raises(RegistryError, match="did you mean 'humaneval'"):
        TASKS.get("humaneva")


def test_duplicate_registration_fails():
    reg = Registry("thing", "repro.test-nothing", {"a": "os:path"})
    with pytest.raises(RegistryError, match="registered twice"):
        reg.register("a", "os:sep")
    reg.register("b", "os:sep")
    assert reg.get("b") == __import__("os").sep


def test_builtins_resolve_lazily():
    assert SYSTEMS.get("oracle").__name__ == "OracleSystem"


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
