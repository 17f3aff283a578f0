"""System chains (`--system "a>b"`): a chain of pass-throughs scores exactly like one, a chain
resumes like a single system, hand-overs a stage cannot take are refused at plan time in one
line, and each stage really reads the previous stage's output."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli
from helpers import stored_scores
from test_runner import run_inprocess

from harness import registry
from harness.api import BaseSystem, system_from_spec
from harness.audio import Audio
from harness.chain import Chain, staged
from harness.config import RunConfig
from harness.errors import ConfigError, RegistryError
from harness.planning import plan
from harness.suites import resolve_suite

SPEECH = "speech-enhancement-quick"


class Halve(BaseSystem):
    """Speech enhancement that halves its input (at 16 kHz, as the task wants)."""

    name = "halve"
    task = "speech-enhancement"
    defaults: dict = {}

    def process(self, items, listener):
        from harness.audio import resample

        out = []
        for it in items:
            x = resample(it.input("input"), 16000)
            n = it.references["clean"].frames
            y = np.zeros((1, n), dtype=np.float32)
            y[:, : min(n, x.frames)] = 0.5 * x.samples[:1, :n]
            out.append({"enhanced": Audio(y, 16000)})
        return out


class Wants8k(Halve):
    """A stage that only takes 8 kHz input."""

    name = "wants-8k"

    def input_problem(self, item, rate: int, channels: int) -> str | None:
        return None if rate == 8000 else "takes 8000 Hz only"


registry.register("harness.systems", "halve", "test_chain:Halve")
registry.register("harness.systems", "wants-8k", "test_chain:Wants8k")


def test_unprocessed_chain_scores_exactly_like_unprocessed(tmp_path):
    df = run_inprocess(tmp_path, suites=[SPEECH], systems=["unprocessed", "unprocessed>unprocessed"])
    assert (df.status == "ok").all()
    a = df[df.system == "unprocessed"].set_index(["item_id", "metric"]).value
    b = df[df.system == "unprocessed>unprocessed"].set_index(["item_id", "metric"]).value
    assert len(a) == len(b) == 6 * 5
    assert np.array_equal(a.sort_index().to_numpy(), b.sort_index().to_numpy())


def test_each_stage_reads_the_previous_stage_output():
    suite = resolve_suite(SPEECH)
    chain = system_from_spec("halve>halve>halve")
    assert isinstance(chain, Chain) and [s.name for s in chain.stages] == ["halve"] * 3
    chain.prepare("cpu")
    item = suite.items[0]
    one = Halve().process([item], None)[0]["enhanced"].samples
    three = chain.process([item], None)[0]["enhanced"].samples
    np.testing.assert_allclose(three, one / 4, rtol=1e-6, atol=1e-9)  # 0.5 ** 3 = 0.5 / 4
    # the staged item keeps the item's references and id, and says where its input came from
    st = staged(item, "input", Audio(one, 16000), "halve output")
    assert st.input("input").samples is one and st.id == item.id
    assert st.inputs["input"].rate == 16000 and st.problems() == []


def test_a_chain_resumes_like_a_single_system(tmp_path):
    args = ["run", "--suite", SPEECH, "--system", "spectral-gating>unprocessed", "--out", str(tmp_path), "-q"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "6 of 6 jobs were already stored" in again.stdout + again.stderr
    df = stored_scores(tmp_path)
    assert set(df.system) == {"spectral-gating>unprocessed"} and (df.status == "ok").all()


def test_a_hand_over_the_next_stage_cannot_take_is_refused_at_plan_time(tmp_path):
    cfg = RunConfig(out=str(tmp_path), suites=[SPEECH], systems=["halve>wants-8k"], quiet=True)
    with pytest.raises(ConfigError) as exc:
        plan(cfg)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("chain halve>wants-8k: stage 1 (halve) gives 16000 Hz, 1 channel(s) to "
                          "stage 2 (wants-8k), which takes 8000 Hz only (suite speech-enhancement-quick")
    # a stage that does not do the suite's task, beside one that does
    cfg = RunConfig(out=str(tmp_path), suites=[SPEECH], systems=["halve>sbr"], quiet=True)
    with pytest.raises(ConfigError, match=r"^chain halve>sbr: stage sbr does not do speech-enhancement"):
        plan(cfg)
    res = run_cli("run", "--suite", SPEECH, "--system", "wpe>sbr", "--out", str(tmp_path), "-q")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "chain wpe>sbr: stage sbr does not do speech-enhancement" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_chain_identity_follows_its_stages_and_their_parameters():
    a = system_from_spec("halve>unprocessed")
    b = system_from_spec("unprocessed>halve")
    c = system_from_spec("spectral-gating>unprocessed", {"spectral-gating": {"prop_decrease": 0.5}})
    d = system_from_spec("spectral-gating>unprocessed")
    assert len({a.identity(), b.identity(), c.identity(), d.identity()}) == 4
    assert a.identity() == system_from_spec(" halve > unprocessed ").identity()
    with pytest.raises(RegistryError, match="empty stage"):
        system_from_spec("halve>")
