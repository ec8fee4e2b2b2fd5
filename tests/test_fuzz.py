"""A bounded fuzz test of spec loading (issue 10): text-level and structure-level mutations of every
shipped spec end in a success or a CnnspecError rendered with a location, within a time and a
memory bound.

Each mutated text goes to one child process (tests/spec_worker.py) that runs what `cnnspec analyze`
runs under a 1 GiB address-space limit; an answer that takes longer than HANG_S seconds counts as a
hang. These are bounds against blow-ups (an alias bomb, a 2**63 repeat), not speed goals: a normal
answer takes well under a second. Every shipped spec gets EXAMPLES mutations of each kind, derandomized,
so CI runs the same ones each time.
"""

from __future__ import annotations

import copy
import json
import os
import re
import selectors
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(p for p in (ROOT / "specs").rglob("*") if p.suffix in (".yaml", ".json") and "invalid" not in p.parts)
MEMORY_LIMIT = 1 << 30
HANG_S = 20
LOCATED = re.compile(r"^\S[^\n]*:\d+:\d+: error: ", re.M)
#: examples per spec and kind of mutation; CNNSPEC_FUZZ_EXAMPLES=100 (and CNNSPEC_FUZZ_RANDOM=1 for
#: new ones each run) searches harder
EXAMPLES = int(os.environ.get("CNNSPEC_FUZZ_EXAMPLES", "5"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("CNNSPEC_FUZZ_RANDOM"),
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Worker:
    """The child process and a line protocol with a timeout per answer."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("spec_worker.py")), str(MEMORY_LIMIT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        assert self._answer(60)["outcome"] == "ready"

    def _answer(self, timeout: float) -> dict[str, Any]:
        if not self.selector.select(timeout):
            self.process.kill()
            raise AssertionError(f"no answer within {timeout} s: the input hangs the loader")
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the checker died (exit {self.process.wait()}): a crash or the memory limit")
        return json.loads(line)

    def check(self, text: str, suffix: str) -> dict[str, Any]:
        self.process.stdin.write(json.dumps({"text": text, "suffix": suffix}) + "\n")
        self.process.stdin.flush()
        return self._answer(HANG_S)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    started = Worker()
    yield started
    started.close()


def assert_acceptable(answer: dict[str, Any], text: str) -> None:
    """A success, or an error whose every diagnostic is located and rendered as file:line:col."""
    shown = text if len(text) < 3000 else text[:3000] + "..."
    assert answer["outcome"] in ("ok", "error"), f"{answer['text']}\n--- input ---\n{shown}"
    if answer["outcome"] == "error":
        assert answer["located"] and LOCATED.match(answer["text"]), f"{answer['text']}\n--- input ---\n{shown}"


# --- text-level mutations ---------------------------------------------------------------------

TOKENS = ["[", "]", "{", "}", ":", ", ", "- ", "\n", "\n  - ", "\t", "'", '"', "#", "|", ">", "? ", "&a ", "*a",
          "<<: *a", "<<: 5", "!!python/object/apply:os.system ", "!!binary ", "%YAML 1.1\n", "---\n", "...\n",
          "0", "-1", "1e400", "9" * 31, str(2**63), ".nan", ".inf", "null", "~", "true", "$x", "${1 / 0}",
          "${index * 99999999}", "\x00", "\ufeff", "\u2028", "[" * 200, "{a: " * 100, "repeat: 100000"]


@st.composite
def mutated_text(draw: st.DrawFn, path: Path) -> str:
    text = path.read_text()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "duplicate", "truncate", "number"]))
        if kind == "insert":
            token = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=6)))
            text = text[:at] + token + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif kind == "duplicate":
            text = text[:at] + text[at:at + draw(st.integers(1, 200))] * draw(st.integers(2, 4)) + text[at:]
        elif kind == "truncate":
            text = text[:at]
        else:
            numbers = list(re.finditer(r"\b\d+\b", text))
            if numbers:
                match = draw(st.sampled_from(numbers))
                value = draw(st.sampled_from(["0", "-3", "10" * 16, str(2**31), str(2**63), "1e30", "3.5", "''"]))
                text = text[:match.start()] + value + text[match.end():]
    return text


SPEC_IDS = [str(path.relative_to(ROOT / "specs")) for path in SPECS]


@pytest.mark.parametrize("path", SPECS, ids=SPEC_IDS)
@FUZZ
@given(data=st.data())
def test_text_mutations_of_shipped_specs(worker: Worker, path: Path, data: st.DataObject) -> None:
    text = data.draw(mutated_text(path))
    assert_acceptable(worker.check(text, path.suffix), text)


# --- structure-level mutations ----------------------------------------------------------------

def _deep_list(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_VALUES = [None, True, False, -1, 0, 1, 2, 2**31, 2**63, 10**30, 1.5, -0.0, float("inf"), float("nan"),
                  "", "x", "input", "$channels", "${index * 1000}", "conv2d", [], {}, [1, 2, 3], [[1]],
                  {"type": "relu"}, {"block": "nope"}, ["input", "input"], _deep_list(80), "x" * 5000]


def _paths(data: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _paths(value, prefix + (index,))


def _parent(data: Any, path: tuple) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


@st.composite
def mutated_structure(draw: st.DrawFn, path: Path) -> str:
    data = yaml.safe_load(path.read_text())
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        where = draw(st.sampled_from(paths))
        parent, key = _parent(data, where), where[-1]
        kind = draw(st.sampled_from(["replace", "replace", "delete", "add", "multiply"]))
        if kind == "replace":
            parent[key] = copy.deepcopy(draw(st.sampled_from(HOSTILE_VALUES)))  # later steps may change it
        elif kind == "delete":
            del parent[key]
        elif kind == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["repeat", "inputs", "when", "with", "type", "name", "typo", "block"]))] = \
                copy.deepcopy(draw(st.sampled_from(HOSTILE_VALUES)))
        elif kind == "multiply" and isinstance(parent, list):
            parent[key:key + 1] = [copy.deepcopy(parent[key]) for _ in range(draw(st.integers(2, 50)))]
    if path.suffix == ".json":
        return json.dumps(data)
    return yaml.safe_dump(data, sort_keys=False, width=200)


@pytest.mark.parametrize("path", SPECS, ids=SPEC_IDS)
@FUZZ
@given(data=st.data())
def test_structure_mutations_of_shipped_specs(worker: Worker, path: Path, data: st.DataObject) -> None:
    text = data.draw(mutated_structure(path))
    assert_acceptable(worker.check(text, path.suffix), text)


def test_every_shipped_spec_loads_in_the_worker(worker: Worker) -> None:
    """The harness itself: unmutated specs are successes under the memory limit, and an oversized
    file is an error that names the limit."""
    for path in SPECS:
        assert worker.check(path.read_text(), path.suffix) == {"outcome": "ok"}, path
    huge = worker.check("name: m\nx: '" + "y" * (300 * 1024) + "'\n", ".yaml")
    assert huge["outcome"] == "error" and "spec files are limited to 262,144 bytes" in huge["text"]
