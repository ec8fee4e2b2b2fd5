"""Messages a newcomer meets first, pinned as whole text: no Python internals, one error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_helpers import run_cli


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_an_empty_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "\n")
    code, out, err = run_cli(["analyze", path], capsys)
    assert (code, out) == (1, "")
    assert err == (f"{path}:1:1: error: the file is empty: a spec is a mapping with name, input and layers\n"
                   "    1 | \n"
                   "      | ^\n")


def test_a_list_instead_of_a_mapping_is_described_in_yaml_words(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "- conv\n- relu\n")
    code, _, err = run_cli(["analyze", path], capsys)
    assert code == 1
    assert err == (f"{path}:1:1: error: a spec must be a mapping with name, input and layers\n"
                   "    1 | - conv\n"
                   "      | ^\n"
                   "  received: a list of 2 items\n")


def test_a_one_letter_typo_is_one_merged_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "name: x\ninput: {channels: 1, height: 8, width: 8}\nlayers:\n"
                           "  - {type: conv2d, out_channel: 32, kernel_size: 3}\n")
    code, _, err = run_cli(["analyze", path], capsys)
    assert code == 1
    assert err == (f"{path}:4:20: error: unknown field 'out_channel' for conv2d layer 'conv2d_1'; "
                   "did you mean 'out_channels'?\n"
                   "    4 |   - {type: conv2d, out_channel: 32, kernel_size: 3}\n"
                   "      |                    ^\n"
                   "  expected: out_channels: Number of filters (output channels).\n"
                   "  received: out_channel=32\n")


def test_an_unknown_field_far_from_any_missing_one_is_still_reported_apart(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "name: x\ninput: {channels: 1, height: 8, width: 8}\nlayers:\n"
                           "  - {type: conv2d, colour: red, kernel_size: 3}\n")
    code, _, err = run_cli(["analyze", path], capsys)
    assert code == 1
    assert "is missing the required field 'out_channels'" in err
    assert "unknown field 'colour' for conv2d layer 'conv2d_1'\n" in err
    assert err.endswith("2 errors\n")
