"""The one registry: tasks, generators and layouts are found by name, plugins add to them, and an
entry that is not what its group holds is refused in one line naming it."""

from __future__ import annotations

import json

import pytest

from harness import registry
from harness.audio import Audio
from harness.errors import RegistryError, SuiteError
from harness.suites.types import load_suite
from harness.tasks import OutputSpec, TaskProtocol, get_protocol, task_names


class Echo(TaskProtocol):
    """A task defined outside the harness, in one class (what a plugin's entry point names)."""

    task = "echo"
    version = "echo/1"
    input_roles = ("input",)
    reference_roles = ("clean",)
    default_metrics = supported_metrics = ("snr",)

    def output_spec(self, item):
        ref = item.references["clean"]
        return {"out": OutputSpec(ref.rate, 1, ref.frames)}


@pytest.fixture
def plugin(monkeypatch):
    tables = {g: dict(t) for g, t in registry.BUILTIN.items()}
    monkeypatch.setattr(registry, "BUILTIN", tables)
    registry.names.cache_clear()
    get_protocol.cache_clear()
    yield registry.register
    registry.names.cache_clear()
    get_protocol.cache_clear()


def test_the_task_list_is_the_registrys_and_a_plugin_task_is_accepted_by_suites(plugin, tmp_path):
    import numpy as np

    from harness.audio import write
    from harness.suites.types import file_ref

    builtin = task_names()
    assert "music-remix" in builtin and "echo" not in builtin
    x = Audio(np.sin(np.arange(8000) / 5.0) * 0.1, 8000)
    refs = {r: file_ref(tmp_path, write(tmp_path / f"{r}.wav", x)).to_json() for r in ("input", "clean")}
    manifest = {"format": "harness-suite/1", "name": "e", "version": "1", "task": "echo",
                "items": [{"id": "a", "inputs": {"input": refs["input"]},
                           "references": {"clean": refs["clean"]}}]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SuiteError, match="unknown task 'echo'"):
        load_suite(tmp_path)
    plugin("harness.tasks", "echo", f"{__name__}:Echo")
    assert task_names()[-1] == "echo"
    suite = load_suite(tmp_path)
    assert suite.task == "echo" and get_protocol("echo").item_problems(suite.items[0]) == []
    assert get_protocol("echo").output_spec(suite.items[0])["out"].frames == 8000


def test_an_entry_of_the_wrong_kind_is_refused_naming_it(plugin):
    plugin("harness.tasks", "not-a-task", "harness.audio:Audio")
    with pytest.raises(RegistryError, match=r"'not-a-task' \(harness.audio:Audio\) is a type, not a "
                                            r"TaskProtocol"):
        get_protocol("not-a-task")
    plugin("harness.tasks", "broken", "no_such_module:Thing")
    with pytest.raises(RegistryError, match="'broken'.*failed to load"):
        get_protocol("broken")
    with pytest.raises(RegistryError, match="unknown task 'nope'"):
        get_protocol("nope")


def test_generators_and_layouts_come_from_the_registry(plugin, tmp_path):
    from harness.suites.layouts import import_layout, layout_names
    from harness.suites.synth.generators import generators, make_suite

    assert set(generators()) == set(task_names())  # one generator per built-in task
    assert {"musdb18hq", "cad1", "icassp2024", "voicebank-demand", "daps", "dnr"} <= set(layout_names())
    with pytest.raises(SuiteError, match="unknown generator 'nope'"):
        make_suite("nope", tmp_path / "x")
    plugin("harness.layouts", "bad", "harness.audio:Audio")
    with pytest.raises(RegistryError, match="not a Layout"):
        import_layout("bad", tmp_path)
    assert Audio  # the entry point named a real object: only its kind was wrong
