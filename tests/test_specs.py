"""Every shipped spec in specs/ (found by glob, so a new file is enrolled automatically; the broken
examples in specs/invalid/ are not shipped specs) loads, analyses, documents itself, and gives the
JSON report contract. A JSON copy of each YAML spec analyses identically: the two are one language.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from cnnspec.spec.source import load_file
from click.testing import CliRunner

import cnnspec
from cnnspec.cli import cli

SPECS = Path(__file__).resolve().parents[1] / "specs"
SPEC_FILES = sorted(p for p in SPECS.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))
YAML_FILES = [p for p in SPEC_FILES if p.suffix != ".json"]

LAYER_KEYS = {"name", "type", "inputs", "output_shape", "params", "macs", "receptive_field"}


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


@functools.cache
def analysis(path: Path) -> Any:
    return cnnspec.analyze(cnnspec.load_spec(path))


def test_the_library_is_found() -> None:
    names = {p.stem for p in SPEC_FILES}
    assert {"simple_cnn", "cifar10_cnn", "vgg16", "resnet18", "resnet50", "mobilenet_v2"} <= names
    assert not any("invalid" in p.parts for p in SPEC_FILES)


@pytest.mark.parametrize("path", SPEC_FILES, ids=ids(SPEC_FILES))
def test_spec_loads_and_analyzes(path: Path) -> None:
    result = analysis(path)
    assert result.layers, "a spec has at least one layer"
    assert all(report.output_shape and min(report.output_shape) > 0 for report in result.layers)


@pytest.mark.parametrize("path", SPEC_FILES, ids=ids(SPEC_FILES))
def test_spec_says_what_it_teaches(path: Path) -> None:
    """A YAML spec opens with a comment; JSON has no comments, so a JSON spec needs a description."""
    if path.suffix == ".json":
        assert analysis(path).spec.description, f"{path.name} needs a description"
        return
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and len(first) > 20, f"{path.name} must open with a comment: {first!r}"


def test_spec_names_are_unique_and_match_the_file() -> None:
    names = [analysis(path).name for path in SPEC_FILES]
    assert len(names) == len(set(names))
    assert names == [path.stem for path in SPEC_FILES]


@pytest.mark.parametrize("path", SPEC_FILES, ids=ids(SPEC_FILES))
def test_json_report_contract(path: Path) -> None:
    """``cnnspec analyze SPEC --format json`` prints one object with the contract keys."""
    run = CliRunner().invoke(cli, ["analyze", str(path), "--format", "json"])
    assert run.exit_code == 0, run.output
    report = json.loads(run.output)
    assert report["name"] == path.stem
    assert len(report["input_shape"]) == 3 and all(isinstance(d, int) for d in report["input_shape"])
    assert report["layers"], "the report lists the layers"
    for layer in report["layers"]:
        assert LAYER_KEYS <= set(layer), f"layer {layer.get('name')} lacks {LAYER_KEYS - set(layer)}"
        assert isinstance(layer["params"], int) and isinstance(layer["macs"], int)
        assert layer["inputs"] and all(isinstance(name, str) for name in layer["inputs"])
        field = layer["receptive_field"]
        if len(layer["output_shape"]) == 3:
            assert set(field) - {"exact"} == {"size", "jump", "start"} and all(len(v) == 2 for v in field.values())
            assert "exact" not in field or False in field["exact"], "exact appears only for an envelope"
        else:
            assert field is None, "the receptive field is null once the output is a vector"
    assert report["totals"]["params"] == sum(layer["params"] for layer in report["layers"])
    assert report["totals"]["macs"] == sum(layer["macs"] for layer in report["layers"])
    expected = json.loads(json.dumps(analysis(path).to_dict()))
    assert {key: report[key] for key in expected} == expected


@pytest.mark.parametrize("path", YAML_FILES, ids=ids(YAML_FILES))
def test_json_copy_analyzes_like_the_yaml(path: Path) -> None:
    data = load_file(path).data  # cnnspec reads YAML 1.2 numbers (1e-3)
    copy = cnnspec.parse_spec(json.dumps(data, indent=1), path.with_suffix(".json").name, json_syntax=True)
    original = analysis(path)
    assert cnnspec.analyze(copy).to_dict() == original.to_dict()
    assert (copy.input, copy.labels, copy.train) == (original.spec.input, original.spec.labels, original.spec.train)


def test_labels_match_the_output() -> None:
    labelled = [path for path in SPEC_FILES if analysis(path).spec.labels]
    assert len(labelled) >= 4, "simple_cnn, cifar10_cnn, lenet5 and inception_block carry labels"
    for path in labelled:
        result = analysis(path)
        assert result.output_shape == (len(result.spec.labels),), path.name
