"""Triton's system shared memory extension on a real server (`shared_memory=system`), over HTTP and
gRPC, with the official clients and tritonclient.utils.shared_memory creating real POSIX objects.
Outputs are compared bit for bit with in-process onnxruntime; every misuse gets a clear 4xx; and the
bytes around a region are checked to be untouched."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from server_helpers import Server, running_server

MODEL = "simple_cnn"
INPUT_BYTES = 4 * 784
OUTPUT_BYTES = 4 * 10


@pytest.fixture(scope="module")
def server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("shm") / "model_repository"
    shutil.copytree(exported_repository, repo)
    with running_server(repo, {"CNNSPEC_SERVE_SHARED_MEMORY": "system"}, grpc=True) as running:
        yield running


@pytest.fixture(scope="module")
def reference(server: Server):
    from cnnspec.deploy.sessions import new_session

    return new_session(server.repo / MODEL / "1" / "model.onnx", threads=1)


@pytest.fixture
def regions(request: pytest.FixtureRequest):
    """Create POSIX shared memory objects with unique keys; destroy them after the test."""
    made = []

    def create(name: str, byte_size: int):
        key = f"/cnnspec_test_{os.getpid()}_{request.node.name[-20:]}_{name}".replace("[", "_").replace("]", "_")
        handle = shm.create_shared_memory_region(name, key, byte_size)
        made.append(handle)
        return handle, key

    yield create
    for handle in made:
        shm.destroy_shared_memory_region(handle)


def digits(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 1, 28, 28)).astype(np.float32)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_inference_through_shared_memory(server: Server, reference, regions, protocol: str) -> None:
    module = triton_http if protocol == "http" else triton_grpc
    client = module.InferenceServerClient(server.url if protocol == "http" else server.grpc_url)
    images = digits(4, seed=11)
    input_handle, input_key = regions("in", images.nbytes)
    output_handle, output_key = regions("out", 4 * OUTPUT_BYTES)
    shm.set_shared_memory_region(input_handle, [images])
    client.register_system_shared_memory(f"{protocol}_in", input_key, images.nbytes)
    client.register_system_shared_memory(f"{protocol}_out", output_key, 4 * OUTPUT_BYTES)
    try:
        status = client.get_system_shared_memory_status(**({"as_json": True} if protocol == "grpc" else {}))
        if protocol == "http":
            assert {r["name"]: (r["key"], int(r["byte_size"])) for r in status} == {
                "http_in": (input_key, images.nbytes), "http_out": (output_key, 4 * OUTPUT_BYTES)}
        else:
            assert set(status["regions"]) == {"grpc_in", "grpc_out"}
            assert status["regions"]["grpc_in"]["key"] == input_key
        tensor = module.InferInput("input", list(images.shape), "FP32")
        tensor.set_shared_memory(f"{protocol}_in", images.nbytes)
        wanted = module.InferRequestedOutput("logits")
        wanted.set_shared_memory(f"{protocol}_out", 4 * OUTPUT_BYTES)
        result = client.infer(MODEL, [tensor], outputs=[wanted])
        output = result.get_output("logits")
        if protocol == "http":  # as Triton: no parameters (its C++ client reads them as binary data)
            assert output == {"name": "logits", "datatype": "FP32", "shape": [4, 10]}
        shape = output["shape"] if protocol == "http" else list(output.shape)
        logits = shm.get_contents_as_numpy(output_handle, np.float32, [int(d) for d in shape])
        assert np.array_equal(logits, reference.run(None, {"input": images})[0])
    finally:
        client.unregister_system_shared_memory()
    status = client.get_system_shared_memory_status(**({"as_json": True} if protocol == "grpc" else {}))
    assert status == [] if protocol == "http" else not status.get("regions")
    client.close()


def test_nothing_outside_the_region_is_written(server: Server, reference, regions) -> None:
    """A region in the middle of a larger object: the output lands at its offset, every other byte keeps
    its sentinel value, and the input is read from its offset only."""
    client = triton_http.InferenceServerClient(server.url)
    size = 3 * 4096
    handle, key = regions("object", size)
    sentinel = np.full(size, 0xAB, np.uint8)
    shm.set_shared_memory_region(handle, [sentinel])
    images = digits(1, seed=5)
    shm.set_shared_memory_region(handle, [images], offset=100)  # the input, inside the object
    client.register_system_shared_memory("middle", key, 4096, offset=4096)
    client.register_system_shared_memory("input", key, INPUT_BYTES, offset=100)
    try:
        tensor = triton_http.InferInput("input", [1, 1, 28, 28], "FP32")
        tensor.set_shared_memory("input", INPUT_BYTES)
        wanted = triton_http.InferRequestedOutput("logits")
        wanted.set_shared_memory("middle", OUTPUT_BYTES, offset=8)
        client.infer(MODEL, [tensor], outputs=[wanted])
    finally:
        client.unregister_system_shared_memory()
    after = shm.get_contents_as_numpy(handle, np.uint8, [size])
    start = 4096 + 8
    logits = after[start:start + OUTPUT_BYTES].view(np.float32)
    assert np.array_equal(logits, reference.run(None, {"input": images})[0].ravel())
    untouched = np.concatenate([after[:100], after[100 + INPUT_BYTES:start], after[start + OUTPUT_BYTES:]])
    assert (untouched == 0xAB).all()
    client.close()


def test_misuse_gets_clear_errors(server: Server, regions) -> None:
    client = triton_http.InferenceServerClient(server.url)
    handle, key = regions("small", 4096)

    def error(call) -> tuple[str, str]:
        with pytest.raises(InferenceServerException) as caught:
            call()
        return caught.value.status(), caught.value.message()

    assert error(lambda: client.register_system_shared_memory("r", "/../../etc/passwd", 16)) == (
        "400", "invalid shared memory key '/../../etc/passwd': a POSIX shared memory name, '/' followed by letters, "
               "digits, '_', '.' or '-' (e.g. '/input0'), never a path")
    assert error(lambda: client.register_system_shared_memory("r", "relative", 16))[0] == "400"
    assert error(lambda: client.register_system_shared_memory("r", "/cnnspec_no_such_key", 16)) == (
        "404", "shared memory key '/cnnspec_no_such_key' does not exist; create it (shm_open) before registering "
               "region 'r'")
    assert error(lambda: client.register_system_shared_memory("r", key, 4096, offset=1)) == (
        "400", f"shared memory region 'r': offset 1 + byte_size 4096 = 4097 runs past the end of '{key}' (4096 bytes)")
    assert error(lambda: client.register_system_shared_memory("r", key, 0))[0] == "400"
    client.register_system_shared_memory("r", key, 4096)
    try:
        assert error(lambda: client.register_system_shared_memory("r", key, 16)) == (
            "400", "shared memory region 'r' is already registered; unregister it first")

        def infer(region: str, byte_size: int, offset: int = 0, output: tuple | None = None):
            tensor = triton_http.InferInput("input", [1, 1, 28, 28], "FP32")
            tensor.set_shared_memory(region, byte_size, offset)
            wanted = None
            if output:
                wanted = [triton_http.InferRequestedOutput("logits")]
                wanted[0].set_shared_memory(*output)
            return lambda: client.infer(MODEL, [tensor], outputs=wanted)

        assert error(infer("nope", INPUT_BYTES)) == ("400", "input 'input': no shared memory region 'nope' is registered")
        assert error(infer("r", INPUT_BYTES, offset=2000)) == (
            "400", "input 'input': shared_memory_offset 2000 + shared_memory_byte_size 3136 runs past the end of "
                   "region 'r' (4096 bytes)")
        assert error(infer("r", 16)) == (
            "400", "input 'input': shape [1, 1, 28, 28] of FP32 needs 3136 bytes but shared_memory_byte_size is 16")
        assert error(infer("r", INPUT_BYTES, output=("r", 8))) == (
            "400", "output 'logits': the output is 40 bytes but shared_memory_byte_size is 8")
        assert error(lambda: client.unregister_system_shared_memory("nope")) == (
            "404", "no shared memory region 'nope' is registered")
    finally:
        client.unregister_system_shared_memory()
    grpc_client = triton_grpc.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException) as caught:
        grpc_client.register_system_shared_memory("g", "/../x", 16)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT" and "invalid shared memory key" in caught.value.message()
    assert client.is_server_live()
    client.close()


@pytest.mark.parametrize("body, message", [
    (b"[]", "the request body must be a JSON object"),
    (b'{"key": 5, "byte_size": 16}', "invalid shared memory key 5"),
    (b'{"key": "/x", "byte_size": -1}', "byte_size must be an integer >= 1, got -1"),
    (b'{"key": "/x", "byte_size": 9223372036854775808}', "byte_size must be an integer >= 1, got 9223372036854775808"),
    (b'{"key": "/x", "byte_size": "16"}', "byte_size must be an integer >= 1, got '16'"),
    (b'{"key": "/x", "offset": 1.5, "byte_size": 16}', "offset must be an integer >= 0, got 1.5"),
    (b'{"key": "/dev/shm/x", "byte_size": 16}', "invalid shared memory key '/dev/shm/x'"),
    (b"{", "malformed JSON in the request body"),
])
def test_malformed_register_bodies_are_400s(server: Server, body: bytes, message: str) -> None:
    import httpx

    answer = httpx.post(f"{server.base}/v2/systemsharedmemory/region/r/register", content=body)
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]
