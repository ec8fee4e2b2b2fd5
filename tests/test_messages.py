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


def test_an_explicit_tag_that_does_not_fit_its_value_is_located_without_pyyaml_internals(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, 'name: x\na: !!map "x"\nb: !!int "x"\n')
    code, out, err = run_cli(["validate", path], capsys)
    assert code == 1 and "<unicode string>" not in err
    assert err.startswith(f"{path}:2:4: error: invalid !!map value: expected a mapping node, but found scalar\n"
                          "    2 | a: !!map \"x\"\n"
                          "      |    ^\n"
                          "  hint: remove the tag !!map; spec files need no explicit YAML tags\n"
                          f"{path}:3:4: error: invalid !!int value 'x'\n"
                          "    3 | b: !!int \"x\"\n"
                          "      |    ^\n"
                          "  hint: remove the tag !!int; spec files need no explicit YAML tags\n")


def png_bytes() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8), "L").save(buffer, "PNG")
    return buffer.getvalue()


def test_unreadable_images_are_named_not_shown_as_python_objects(tmp_path: Path) -> None:
    from cnnspec.deploy.images import ImageError, load_image

    notes = write(tmp_path, "hello", "notes.png")
    truncated = png_bytes()[:120]
    cases = [
        (notes, None, f"{notes} is not a readable image (not a format Pillow can decode: PNG, JPEG, BMP, GIF, "
                      "TIFF, WebP, ...)"),
        (b"hello", None, "the image bytes is not a readable image (not a format Pillow can decode: PNG, JPEG, "
                         "BMP, GIF, TIFF, WebP, ...)"),
        (truncated, "the uploaded body", "the uploaded body is not a readable image (image file is truncated)"),
    ]
    for source, name, message in cases:
        with pytest.raises(ImageError) as caught:
            load_image(source, name)
        assert str(caught.value) == message


def test_the_service_names_the_uploaded_body_and_the_header_curl_needs() -> None:
    from cnnspec.deploy.images import Preprocessing
    from serving.classify import _form_encoded_message, decode
    from serving.errors import BadRequest

    grey = Preprocessing("L", 1, 28, 28, (0.0,), (1.0,))
    for data, message in [(b"hello", "the uploaded body is not a readable image; classify accepts PNG or JPEG"),
                          (png_bytes()[:120], "the uploaded body is not a readable image (image file is truncated)")]:
        with pytest.raises(BadRequest) as caught:
            decode(data, grey, 10**6)
        assert str(caught.value) == message
    assert _form_encoded_message(png_bytes()) == (
        "the body is a PNG image but its Content-Type is application/x-www-form-urlencoded (curl's default for "
        "--data-binary); set the header 'Content-Type: image/png' (curl -H 'Content-Type: image/png' "
        "--data-binary @image ...) or upload it as a form file (curl -F file=@image ...)")


def test_validate_counts_in_words_and_ends_with_how_many_files_are_valid(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = write(tmp_path, "name: one\ninput: {channels: 1, height: 4, width: 4}\nlayers:\n  - {type: relu}\n", "one.yaml")
    code, out, err = run_cli(["validate", one], capsys)
    assert (code, out, err) == (0, f"ok  {one}  (1 layer, 0 params, 0 MACs)\n", "")
    missing = tmp_path / "missing.yaml"
    code, out, err = run_cli(["validate", one, missing, one], capsys)
    assert (code, err) == (1, f"error: no such file: {missing}\n  hint: check the path\n")
    assert out == f"ok  {one}  (1 layer, 0 params, 0 MACs)\n" * 2 + "2 of 3 valid\n"
    code, out, _ = run_cli(["validate", "--quiet", one, one], capsys)
    assert (code, out) == (0, "")
