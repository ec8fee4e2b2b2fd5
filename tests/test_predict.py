"""cnnspec predict, cnnspec.deploy.images and the model card: real digit images in odd sizes and modes,
preprocessed from the exported model's card alone, classified by onnxruntime; bad inputs give clear
errors; predict and the service's /classify give the same probabilities whether or not the spec
ends in softmax."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnspec.cli import main
from cnnspec.train.data import dataset_info, load_split, normalize
from cnnspec.deploy.images import ImageError, Preprocessing, normalize_pixels, preprocess, softmax
from cnnspec.deploy.model_card import METADATA_KEYS, ModelCard, ModelCardError
from cnnspec.deploy.predict import Predictor, resolve_model
from cnnspec.deploy.repository import RepositoryError
from test_export import run_cli, train_simple_cnn

REPO_ROOT = Path(__file__).resolve().parents[1]
METADATA = {"cnnspec.input_shape": "[1, 28, 28]", "cnnspec.color_mode": "L",
            "cnnspec.mean": "[0.1307]", "cnnspec.std": "[0.3081]"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding the SimpleCNN trained one epoch on the built-in sample."""
    run = train_simple_cnn(tmp_path_factory.getbasetemp())
    repo = tmp_path_factory.mktemp("predict") / "model_repository"
    with contextlib.redirect_stdout(io.StringIO()):
        main(["export", str(run), "--repo", str(repo), "--samples", "9"])
    return repo


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, int]]:
    """Test-split digits (never trained on) written as files of assorted sizes, modes and formats."""
    folder = tmp_path_factory.mktemp("digits")
    images, labels = load_split("mnist_sample", None, train=False)
    writers = [
        lambda a, p: Image.fromarray(a, "L").save(p.with_suffix(".png")),                           # as trained
        lambda a, p: Image.fromarray(a, "L").resize((56, 56)).convert("RGB").save(p.with_suffix(".png")),
        lambda a, p: Image.fromarray(a, "L").resize((41, 37)).convert("RGB").save(p.with_suffix(".jpg"), quality=95),
        lambda a, p: Image.fromarray(a, "L").convert("RGBA").save(p.with_suffix(".png")),
        lambda a, p: Image.fromarray(a, "L").convert("P").save(p.with_suffix(".png")),
        lambda a, p: Image.fromarray(a.astype(np.uint16) * 257).save(p.with_suffix(".png")),          # 16-bit grey
        lambda a, p: Image.fromarray(a, "L").resize((112, 112)).save(p.with_suffix(".jpg"), quality=90),
    ]
    files = []
    for number, index in enumerate(range(3, 1000, 50)):  # 20 digits, two of each class
        base = folder / f"digit_{number:02d}"
        writers[number % len(writers)](images[index, 0].numpy(), base)
        files.append((next(folder.glob(f"digit_{number:02d}.*")), int(labels[index])))
    return files


def test_predict_reads_real_digits_in_odd_sizes_and_modes(repo: Path, digit_files: list[tuple[Path, int]],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    paths = [path for path, _ in digit_files]
    code, out, err = run_cli(["predict", repo, *paths, "--format", "json", "--top-k", 3], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["model"] == str(repo / "simple_cnn" / "1" / "model.onnx")
    right = 0
    for entry, (path, label) in zip(report["results"], digit_files):
        assert entry["image"] == str(path)
        top = entry["predictions"]
        assert len(top) == 3
        probabilities = [p["probability"] for p in top]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
        right += top[0]["label"] == str(label)
    assert right >= 16, f"only {right}/20 digits recognised"


def test_predict_table_output(repo: Path, digit_files: list[tuple[Path, int]],
                              capsys: pytest.CaptureFixture[str]) -> None:
    path, label = digit_files[0]
    code, out, err = run_cli(["predict", repo / "simple_cnn", path, "-k", 2], capsys)
    assert code == 0, err
    row = next(line for line in out.splitlines() if path.name in line)
    assert f" {label} " in row and "%" in row
    assert out.splitlines()[0] == f"predictions of {repo / 'simple_cnn' / '1' / 'model.onnx'}"  # no padding
    assert [line for line in out.splitlines() if line != line.rstrip()] == []


def test_file_preprocessing_equals_training_normalisation() -> None:
    images, _ = load_split("mnist_sample", None, train=False)
    pixels = images[:5].numpy()
    expected = normalize(images[:5], dataset_info("mnist_sample")).numpy()
    for raw, want in zip(pixels, expected):
        buffer = io.BytesIO()
        Image.fromarray(raw[0], "L").save(buffer, format="PNG")
        got = preprocess(buffer.getvalue(), METADATA)
        assert got.shape == (1, 1, 28, 28) and got.dtype == np.float32
        np.testing.assert_allclose(got[0], want, atol=1e-5)
    np.testing.assert_allclose(normalize_pixels(pixels, [0.1307], [0.3081]), expected, atol=1e-5)


def test_preprocess_converts_mode_and_size_per_metadata() -> None:
    rgb = {**METADATA, "cnnspec.input_shape": "[3, 32, 24]", "cnnspec.color_mode": "RGB",
           "cnnspec.mean": "[0.5, 0.5, 0.5]", "cnnspec.std": "[0.25, 0.5, 1.0]"}
    grey = Image.new("L", (7, 9), color=255)
    array = preprocess(grey, rgb)
    assert array.shape == (1, 3, 32, 24)  # [N, C, H, W]: resized to width 24, height 32
    np.testing.assert_allclose(array[0, :, 0, 0], [(1 - 0.5) / 0.25, (1 - 0.5) / 0.5, (1 - 0.5) / 1.0], rtol=1e-6)
    red = preprocess(Image.new("RGB", (28, 28), color=(255, 0, 0)), METADATA)
    assert red[0, 0, 0, 0] == pytest.approx((76 / 255 - 0.1307) / 0.3081, rel=1e-4)  # ITU-R 601 luma of red


def test_softmax_is_stable() -> None:
    probabilities = softmax(np.array([[1000.0, 1000.0, -1000.0]], dtype=np.float32))
    np.testing.assert_allclose(probabilities, [[0.5, 0.5, 0.0]], atol=1e-7)


@pytest.mark.parametrize("metadata, message", [
    ({}, "has no 'cnnspec.input_shape'"),
    ({**METADATA, "cnnspec.input_shape": "[1, 28]"}, "must be [C, H, W]"),
    ({**METADATA, "cnnspec.color_mode": "RGB"}, "does not fit 1 input channel"),
    ({**METADATA, "cnnspec.std": "[0]"}, "must be positive"),
    ({**METADATA, "cnnspec.mean": "not json"}, "is not valid JSON"),
])
def test_bad_metadata_is_explained(metadata: dict, message: str) -> None:
    with pytest.raises(ImageError, match=message.replace("[", r"\[")):
        Preprocessing.from_metadata(metadata)


def test_model_resolution(repo: Path, tmp_path: Path) -> None:
    model = repo / "simple_cnn" / "1" / "model.onnx"
    assert resolve_model(repo) == model
    assert resolve_model(repo, "simple_cnn", 1) == model
    assert resolve_model(repo / "simple_cnn") == model
    assert resolve_model(repo / "simple_cnn" / "1") == model
    assert resolve_model(model) == model
    with pytest.raises(RepositoryError, match="no model 'simple_cnm'.*did you mean 'simple_cnn'"):
        resolve_model(repo, "simple_cnm")
    with pytest.raises(RepositoryError, match=r"has no version 7 .*\(versions: 1\)"):
        resolve_model(repo, "simple_cnn", 7)
    import shutil

    two = tmp_path / "two"
    shutil.copytree(repo / "simple_cnn", two / "a")
    shutil.copytree(repo / "simple_cnn", two / "b")
    with pytest.raises(RepositoryError, match=r"holds 2 models \(a, b\); choose one with --model"):
        resolve_model(two)


def test_bad_inputs_to_predict(repo: Path, digit_files: list[tuple[Path, int]], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    good = digit_files[0][0]
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    broken_model = tmp_path / "broken.onnx"
    broken_model.write_bytes(b"\x08\x07garbage")
    import onnx

    bare = onnx.load(repo / "simple_cnn" / "1" / "model.onnx")
    del bare.metadata_props[:]  # a valid graph without a model card
    bare_model = tmp_path / "bare.onnx"
    onnx.save(bare, bare_model)
    cases = [
        (["predict", repo, "--model", "resnet", good], "no model 'resnet' in repository"),
        (["predict", tmp_path / "nowhere", good], "no model file or model repository at"),
        (["predict", repo, not_an_image], "is not a readable image"),
        (["predict", repo, tmp_path / "missing.png"], "no image file at"),
        (["predict", broken_model, good], "onnxruntime cannot load the model"),
        (["predict", bare_model, good], "model metadata has no 'cnnspec.spec_name', 'cnnspec.spec_hash'"),
    ]
    for args, message in cases:
        code, out, err = run_cli(args, capsys)
        assert code == 1 and message in err, (args, err)
        assert "Traceback" not in err


def test_predict_and_images_never_import_torch(repo: Path, digit_files: list[tuple[Path, int]]) -> None:
    """serving/ reuses cnnspec.deploy.images; predict runs where torch is not installed."""
    code = (
        "import sys\n"
        "from cnnspec.deploy.predict import Predictor, resolve_model\n"
        f"p = Predictor.load(resolve_model({str(repo)!r}))\n"
        f"print(p.predict([{str(digit_files[0][0])!r}], 1)[0][0]['label'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in {str(d) for d in range(10)}


def test_predictor_api(repo: Path, digit_files: list[tuple[Path, int]]) -> None:
    predictor = Predictor.load(resolve_model(repo))
    probabilities = predictor.probabilities([path for path, _ in digit_files[:4]])
    assert probabilities.shape == (4, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert predictor.labels == [str(d) for d in range(10)]


# --- the model card ------------------------------------------------------------------------------

CONTRACT_KEYS = [  # the names every exported model carries; changing one breaks models already out there
    "cnnspec.spec_name", "cnnspec.spec_hash", "cnnspec.spec", "cnnspec.labels", "cnnspec.input_shape",
    "cnnspec.mean", "cnnspec.std", "cnnspec.color_mode", "cnnspec.dataset", "cnnspec.version",
    "cnnspec.eval_accuracy", "cnnspec.input_name", "cnnspec.output_name", "cnnspec.quantization",
    "cnnspec.outputs", "cnnspec.epoch",
]
CARD = {**METADATA, "cnnspec.spec_name": "s", "cnnspec.spec_hash": "0" * 64, "cnnspec.spec": "name: s\n",
        "cnnspec.labels": json.dumps([str(d) for d in range(10)]), "cnnspec.dataset": "mnist",
        "cnnspec.version": "0.1.0", "cnnspec.eval_accuracy": "", "cnnspec.input_name": "input",
        "cnnspec.output_name": "logits", "cnnspec.quantization": "none", "cnnspec.outputs": "logits",
        "cnnspec.epoch": ""}


def test_model_card_keys_are_the_contract() -> None:
    assert list(METADATA_KEYS) == CONTRACT_KEYS
    assert sorted(CARD) == sorted(CONTRACT_KEYS)


def test_model_card_round_trips_and_reads_outputs() -> None:
    card = ModelCard.from_metadata(CARD)
    assert card.to_metadata() == CARD
    assert (card.eval_accuracy, card.epoch, card.mean, card.input_shape) == (None, None, (0.1307,), (1, 28, 28))
    scores = np.array([[2.0, 1.0, 0.0]], dtype=np.float32)
    by_hand = np.exp(scores) / np.exp(scores).sum()
    np.testing.assert_allclose(card.probabilities(scores), by_hand, rtol=1e-6)  # logits: softmax
    as_probabilities = ModelCard.from_metadata({**CARD, "cnnspec.outputs": "probabilities"})
    np.testing.assert_array_equal(as_probabilities.probabilities(by_hand), by_hand)  # kept as they are
    later = ModelCard.from_metadata({**CARD, "cnnspec.eval_accuracy": "0.975", "cnnspec.epoch": "3"})
    assert (later.eval_accuracy, later.epoch) == (0.975, 3)


@pytest.mark.parametrize("change, message", [
    ({"cnnspec.outputs": "logit"}, "cnnspec.outputs must be one of 'logits', 'probabilities'; got 'logit'"),
    ({"cnnspec.quantization": "int4"}, "cnnspec.quantization must be one of 'none', 'dynamic-int8', 'static-int8'"),
    ({"cnnspec.labels": "[1, 2]"}, "cnnspec.labels must be a JSON list of strings; got [1, 2]"),
    ({"cnnspec.epoch": "three"}, "cnnspec.epoch must be an integer or empty; got 'three'"),
    ({"cnnspec.eval_accuracy": "nan"}, "cnnspec.eval_accuracy must be a number or empty; got 'nan'"),
    ({"cnnspec.output_name": ""}, "cnnspec.output_name is empty"),
    ({"cnnspec.std": "[-1]"}, "cnnspec.std must be positive"),
])
def test_bad_model_card_is_explained(change: dict, message: str) -> None:
    with pytest.raises(ModelCardError) as error:
        ModelCard.from_metadata({**CARD, **change})
    assert message in str(error.value)


def test_model_card_names_every_missing_key() -> None:
    partial = {k: v for k, v in CARD.items() if k not in ("cnnspec.outputs", "cnnspec.epoch")}
    with pytest.raises(ModelCardError, match="has no 'cnnspec.outputs', 'cnnspec.epoch'; was the model exported"):
        ModelCard.from_metadata(partial)


# --- /classify and predict agree, with and without a final softmax (issue 8's defect) -------------

@pytest.fixture(scope="module")
def twin_repo(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained SimpleCNN exported twice: as trained (it outputs logits) and, as
    simple_cnn_softmax, the same weights under its spec plus a final softmax layer (which has no
    weights), so both models must give the same probabilities for any image."""
    import shutil

    import cnnspec
    from cnnspec.train.checkpoint import load_checkpoint, save_checkpoint

    twins = tmp_path_factory.mktemp("twins") / "model_repository"
    shutil.copytree(repo, twins)
    payload = load_checkpoint(train_simple_cnn(tmp_path_factory.getbasetemp()) / "best.pt")
    last = "  - {type: linear, name: fc2, out_features: 10}\n"
    text = payload["spec_text"].replace("name: simple_cnn\n", "name: simple_cnn_softmax\n", 1)
    text = text.replace(last, last + "  - {type: softmax, name: probabilities}\n")
    spec = cnnspec.parse_spec(text)
    assert [node.layer.type for node in spec.nodes][-2:] == ["linear", "softmax"]
    run = tmp_path_factory.mktemp("softmax_run")
    save_checkpoint(run / "best.pt", {**payload, "spec_text": text, "spec_hash": spec.hash, "spec_name": spec.name})
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["export", str(run), "--repo", str(twins), "--samples", "9"]) in (0, None)
    return twins


def classify(repository: Path, model: str, image: bytes) -> dict[int, float]:
    """POST the image to the real service app's /classify (in process, over ASGI); index -> probability."""
    import asyncio

    import httpx

    from serving.app import ServingApp
    from serving.settings import ServeSettings

    async def run() -> httpx.Response:
        app = ServingApp(ServeSettings(model_repository=repository, intra_op_threads=1))
        await app.startup()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serving") as client:
                return await client.post(f"/v2/models/{model}/classify?k=10", content=image,
                                         headers={"Content-Type": "image/png"})
        finally:
            await app.shutdown()

    answer = asyncio.run(run())
    assert answer.status_code == 200, answer.text
    return {p["index"]: p["probability"] for p in answer.json()["predictions"]}


@pytest.mark.parametrize("model", ["simple_cnn", "simple_cnn_softmax"])
def test_classify_and_predict_agree_whether_or_not_the_spec_ends_in_softmax(
        twin_repo: Path, digit_files: list[tuple[Path, int]], model: str) -> None:
    import onnxruntime as ort

    path, label = digit_files[0]  # a 28x28 grey PNG, as trained
    logits_model = ort.InferenceSession(str(twin_repo / "simple_cnn" / "1" / "model.onnx"))
    logits = logits_model.run(None, {"input": preprocess(path, METADATA)})[0][0].astype(np.float64)
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    # a confident answer: a second softmax over 10 classes could not exceed e / (e + 9) = 23%
    assert expected.argmax() == label and expected.max() > 0.5

    raw = ort.InferenceSession(str(twin_repo / model / "1" / "model.onnx")).run(None, {"input": preprocess(path, METADATA)})[0][0]
    if model == "simple_cnn_softmax":
        np.testing.assert_allclose(raw, expected, atol=1e-5)  # the graph itself outputs probabilities
    predicted = Predictor.load(resolve_model(twin_repo, model)).probabilities([path])[0]
    served = classify(twin_repo, model, path.read_bytes())
    np.testing.assert_allclose(predicted, expected, atol=1e-5)
    np.testing.assert_allclose([served[i] for i in range(10)], expected, atol=1e-5)


def test_one_bad_file_does_not_stop_the_others(repo: Path, digit_files: list[tuple[Path, int]], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10: the good files are classified as they would be alone, the bad one is named with
    the reason, and the exit code says that one failed."""
    first, second = digit_files[0][0], digit_files[1][0]
    notes = tmp_path / "notes.png"
    notes.write_text("hello")
    code, out, err = run_cli(["predict", repo, first, notes, second, "--format", "json"], capsys)
    assert code == 1
    message = f"{notes} is not a readable image (not a format Pillow can decode: PNG, JPEG, BMP, GIF, TIFF, WebP, ...)"
    assert err == f"error: {message}\n1 of 3 images could not be classified\n"
    results = json.loads(out)["results"]
    assert [entry["image"] for entry in results] == [str(first), str(notes), str(second)]
    assert results[1] == {"image": str(notes), "error": message}
    _, alone, _ = run_cli(["predict", repo, first, second, "--format", "json"], capsys)
    expected = json.loads(alone)["results"]
    for got, want in zip([results[0], results[2]], expected):
        assert [p["label"] for p in got["predictions"]] == [p["label"] for p in want["predictions"]]
        assert [p["probability"] for p in got["predictions"]] == pytest.approx(
            [p["probability"] for p in want["predictions"]], abs=1e-6)
    code, out, err = run_cli(["predict", repo, first, notes], capsys)  # the table marks the bad row
    assert code == 1 and out.count("not classified") == 1 and err == f"error: {message}\n1 of 2 images could not be classified\n"
