"""The V2 gRPC API: a real `python -m serving --grpc-port` process on 127.0.0.1, driven by the official
tritonclient.grpc client (sync, asyncio and streaming) and by the stubs it ships for what that
client cannot send (typed contents, mismatched raw inputs).

Outputs are compared bit for bit with in-process onnxruntime on the same file; errors by their
gRPC status code and by the very message the HTTP API gives for the same mistake.
"""

from __future__ import annotations

import asyncio
import queue
import shutil
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from server_helpers import Server, assert_statistics_invariants, running_server

MODEL = "simple_cnn"
BODY_LIMIT = 1024 * 1024
HANDSHAKE_TIMEOUT_S = 2.0
STREAM_IDLE_S = 2.0
BODY_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def server(exported_repository: Path, tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("grpc") / "model_repository"
    shutil.copytree(exported_repository, repo)
    env = {"CNNSPEC_SERVE_MAX_BODY_BYTES": str(BODY_LIMIT), "CNNSPEC_SERVE_HEADER_TIMEOUT_S": str(HANDSHAKE_TIMEOUT_S),
           "CNNSPEC_SERVE_STREAM_IDLE_TIMEOUT_S": str(STREAM_IDLE_S), "CNNSPEC_SERVE_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}
    with running_server(repo, env, grpc=True) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Server):
    with triton.InferenceServerClient(server.grpc_url) as connection:
        yield connection


@pytest.fixture(scope="module")
def stub(server: Server):
    with grpc.insecure_channel(server.grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def reference(server: Server):
    from cnnspec.deploy.sessions import new_session

    return new_session(server.repo / MODEL / "1" / "model.onnx", threads=1)


def digits(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 1, 28, 28)).astype(np.float32)


def infer_input(array: np.ndarray, module=triton) -> triton.InferInput:
    tensor = module.InferInput("input", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)  # raw_input_contents, as tritonclient.grpc always sends
    return tensor


def expected(reference, images: np.ndarray) -> np.ndarray:
    return reference.run(None, {"input": images})[0]


def grpc_error(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


# --- settings ------------------------------------------------------------------------------------

def test_grpc_port_flag_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from serving.__main__ import parse_args, settings_from

    assert parse_args(["--grpc-port", "8001"]) == {"grpc_port": 8001}
    assert settings_from({"model_repository": tmp_path}).grpc_port is None  # off by default
    monkeypatch.setenv("CNNSPEC_SERVE_GRPC_PORT", "9001")
    assert settings_from({"model_repository": tmp_path}).grpc_port == 9001


def test_a_taken_grpc_port_stops_the_server_with_exit_1(exported_repository: Path) -> None:
    import socket
    import subprocess
    import sys

    from conftest import REPO_ROOT
    from server_helpers import free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "serving", "--model-repository", str(exported_repository),
                               "--port", str(free_port()), "--grpc-port", str(port)],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"cannot bind the gRPC port 127.0.0.1:{port}" in done.stderr
    assert "error: the server did not start; see the error above" in done.stderr
    assert "Traceback" not in done.stderr


def test_cnnspec_serve_has_the_grpc_port_flag() -> None:
    from click.testing import CliRunner

    from cnnspec.cli import cli

    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "--grpc-port" in result.output


# --- health, metadata, config --------------------------------------------------------------------

def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("no_such_model") and not client.is_model_ready(MODEL, "7")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "cnnspec" and "statistics" in server["extensions"]
    model = client.get_model_metadata(MODEL, as_json=True)
    assert model == {"name": MODEL, "versions": ["1"], "platform": "onnxruntime_onnx",
                     "inputs": [{"name": "input", "datatype": "FP32", "shape": ["-1", "1", "28", "28"]}],
                     "outputs": [{"name": "logits", "datatype": "FP32", "shape": ["-1", "10"]}]}


def test_model_config_is_config_pbtxt_in_tritons_schema(client: triton.InferenceServerClient, server: Server) -> None:
    on_disk = text_format.Parse((server.repo / MODEL / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert client.get_model_config(MODEL).config == on_disk


# --- inference -----------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 5, 64])
def test_infer_raw_is_bit_exact(client: triton.InferenceServerClient, reference, batch: int) -> None:
    images = digits(batch, seed=batch)
    result = client.infer(MODEL, [infer_input(images)], request_id="r1")
    assert np.array_equal(result.as_numpy("logits"), expected(reference, images))
    assert result.get_response().id == "r1" and result.get_response().model_version == "1"


def test_infer_typed_contents_is_bit_exact(stub, reference) -> None:
    images = digits(3, seed=7)
    request = service_pb2.ModelInferRequest(model_name=MODEL, inputs=[
        service_pb2.ModelInferRequest.InferInputTensor(
            name="input", datatype="FP32", shape=images.shape,
            contents=service_pb2.InferTensorContents(fp32_contents=images.ravel().tolist()))])
    response = stub.ModelInfer(request)
    assert len(response.raw_output_contents) == 1 and list(response.outputs[0].shape) == [3, 10]
    logits = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(3, 10)
    assert np.array_equal(logits, expected(reference, images))


def test_classification_output(client: triton.InferenceServerClient, reference) -> None:
    images = digits(2, seed=3)
    result = client.infer(MODEL, [infer_input(images)], outputs=[triton.InferRequestedOutput("logits", class_count=3)])
    top = result.as_numpy("logits")
    for row, entries in zip(expected(reference, images), top):
        assert [int(e.decode().split(":")[1]) for e in entries] == list(np.argsort(-row, kind="stable")[:3])


def test_aio_client_concurrent_requests_are_batched(server: Server, reference) -> None:
    async def run() -> tuple[list, dict, dict]:
        async with triton_aio.InferenceServerClient(server.grpc_url) as aio:
            assert await aio.is_server_live() and await aio.is_model_ready(MODEL)
            assert (await aio.get_model_metadata(MODEL)).name == MODEL
            before = (await aio.get_inference_statistics(MODEL)).model_stats[0]
            batches = [digits(1 + i % 3, seed=200 + i) for i in range(32)]
            results = await asyncio.gather(*(aio.infer(MODEL, [infer_input(b, triton_aio)]) for b in batches))
            after = (await aio.get_inference_statistics(MODEL)).model_stats[0]
            return list(zip(batches, results)), before, after

    pairs, before, after = asyncio.run(run())
    for images, result in pairs:
        assert np.array_equal(result.as_numpy("logits"), expected(reference, images))
    assert after.execution_count - before.execution_count < 32  # 32 concurrent requests were coalesced


def test_streaming_answers_every_request_and_reports_errors_in_the_stream(client: triton.InferenceServerClient,
                                                                          reference) -> None:
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        sent = {}
        for index in range(12):
            images = digits(1 + index % 4, seed=300 + index)
            sent[str(index)] = images
            client.async_stream_infer(MODEL, [infer_input(images)], request_id=str(index))
        client.async_stream_infer(MODEL, [infer_input(digits(1)[:, :, :27])], request_id="bad")
        received = [answers.get(timeout=30) for _ in range(13)]
    finally:
        client.stop_stream()
    errors = [error for _, error in received if error is not None]
    assert len(errors) == 1 and "does not match the model's [-1, 1, 28, 28]" in errors[0].message()
    for result, error in received:
        if error is None:
            request_id = result.get_response().id
            assert np.array_equal(result.as_numpy("logits"), expected(reference, sent.pop(request_id)))
    assert not sent


def test_aio_streaming(server: Server, reference) -> None:
    batches = [digits(2, seed=400 + i) for i in range(8)]

    async def run() -> list:
        async with triton_aio.InferenceServerClient(server.grpc_url) as aio:
            async def requests():
                for index, images in enumerate(batches):
                    yield {"model_name": MODEL, "inputs": [infer_input(images, triton_aio)], "request_id": str(index)}
            return [(result, error) async for result, error in aio.stream_infer(requests())]

    received = asyncio.run(run())
    assert len(received) == len(batches) and all(error is None for _, error in received)
    for result, _ in received:
        images = batches[int(result.get_response().id)]
        assert np.array_equal(result.as_numpy("logits"), expected(reference, images))


def test_a_stream_idle_for_stream_idle_timeout_s_ends_with_deadline_exceeded(client: triton.InferenceServerClient,
                                                                             server: Server) -> None:
    """One request answered, then silence: the stream ends after stream_idle_timeout_s with
    DEADLINE_EXCEEDED (the official client reports it to its callback), never silently held."""
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error, time.monotonic())))
    try:
        client.async_stream_infer(MODEL, [infer_input(digits(1))], request_id="only")
        result, error, answered = answers.get(timeout=30)
        assert error is None and result.get_response().id == "only"
        _, error, ended = answers.get(timeout=30)
    finally:
        client.stop_stream()
    assert error is not None and error.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert f"no complete request on this stream for {STREAM_IDLE_S:g} s (stream_idle_timeout_s)" in error.message()
    assert STREAM_IDLE_S - 0.2 <= ended - answered <= STREAM_IDLE_S + 8


def test_a_stream_that_keeps_sending_or_waits_for_answers_is_not_idle(server: Server) -> None:
    """Requests 0.8 s apart for 4 s (twice the idle limit in all) keep a stream open; the limit is
    idle time, not the stream's age. A stream that never sends a message ends after the limit."""
    async def steady() -> list:
        async with triton_aio.InferenceServerClient(server.grpc_url) as aio:
            async def requests():
                for index in range(5):
                    yield {"model_name": MODEL, "inputs": [infer_input(digits(1), triton_aio)], "request_id": str(index)}
                    await asyncio.sleep(0.8)
            return [(result, error) async for result, error in aio.stream_infer(requests())]

    received = asyncio.run(steady())
    assert [error for _, error in received] == [None] * 5

    async def silent() -> tuple[grpc.StatusCode, float]:
        async with grpc.aio.insecure_channel(server.grpc_url) as channel:
            stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
            call = stream()  # opened, and never a message
            started = time.monotonic()
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError as error:
                return error.code(), time.monotonic() - started
            return grpc.StatusCode.OK, time.monotonic() - started

    code, waited = asyncio.run(silent())
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and STREAM_IDLE_S - 0.2 <= waited <= STREAM_IDLE_S + 8


@pytest.mark.parametrize("method", ["ModelInfer", "ModelMetadata", "ServerLive"])
def test_a_unary_call_whose_message_does_not_arrive_ends_after_body_timeout_s(server: Server, method: str) -> None:
    """A call that sent its headers and then nothing (on the wire, a unary call stalled before or
    inside its message) ends with DEADLINE_EXCEEDED after body_timeout_s, though the client set no
    deadline; one that half-closes without a message is refused at once."""
    async def call(finish: bool) -> tuple[grpc.StatusCode, str, float]:
        async with grpc.aio.insecure_channel(server.grpc_url) as channel:
            pending = channel.stream_unary(f"/inference.GRPCInferenceService/{method}")()
            started = time.monotonic()
            if finish:
                await pending.done_writing()
            try:
                await pending
            except grpc.aio.AioRpcError as error:
                return error.code(), error.details(), time.monotonic() - started
            return grpc.StatusCode.OK, "", time.monotonic() - started

    code, details, waited = asyncio.run(call(finish=False))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED, details
    assert f"did not fully arrive within {BODY_TIMEOUT_S:g} s of the call's start (body_timeout_s)" in details
    assert BODY_TIMEOUT_S - 0.2 <= waited <= BODY_TIMEOUT_S + 8
    code, details, waited = asyncio.run(call(finish=True))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "the call ended before its request message")
    assert waited < BODY_TIMEOUT_S


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _literal(name: str, value: str) -> bytes:
    """An HPACK header field, literal and never indexed, without Huffman coding (RFC 7541, 6.2.3)."""
    name_bytes, value_bytes = name.encode(), value.encode()
    return b"\x10" + bytes([len(name_bytes)]) + name_bytes + bytes([len(value_bytes)]) + value_bytes


@pytest.mark.parametrize(("method", "limit"), [("ModelInfer", BODY_TIMEOUT_S), ("ModelStreamInfer", STREAM_IDLE_S)])
def test_a_call_stopped_inside_its_message_is_ended_after_its_time_limit(server: Server, method: str,
                                                                          limit: float) -> None:
    """Raw HTTP/2, as no gRPC client can send it: the method's headers, then a DATA frame whose gRPC
    prefix announces a 1,000-byte message of which 5 bytes follow, then nothing. The server ends the
    stream (trailers with END_STREAM, or RST_STREAM) after body_timeout_s (unary) or
    stream_idle_timeout_s (streaming), with the connection still open; grpc alone would wait for
    the rest as long as the connection lives."""
    import socket

    headers = b"".join(_literal(name, value) for name, value in (
        (":method", "POST"), (":scheme", "http"), (":path", f"/inference.GRPCInferenceService/{method}"),
        (":authority", server.grpc_url), ("content-type", "application/grpc"), ("te", "trailers")))
    partial = b"\x00" + (1000).to_bytes(4, "big") + b"\x0a\x03abc"
    with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=limit + 10) as connection:
        connection.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0)
                           + _frame(1, 0x4, 1, headers) + _frame(0, 0, 1, partial))
        started, buffer, ended = time.monotonic(), b"", None
        while ended is None:
            chunk = connection.recv(65536)
            assert chunk, "the server closed the connection instead of ending the stream"
            buffer += chunk
            while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                length, kind, flags = int.from_bytes(buffer[:3], "big"), buffer[3], buffer[4]
                stream, payload = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF, buffer[9:9 + length]
                buffer = buffer[9 + length:]
                if kind == 4 and not flags & 0x1:  # the server's SETTINGS: acknowledge them
                    connection.sendall(_frame(4, 0x1, 0))
                elif kind == 6 and not flags & 0x1:  # PING: answer it
                    connection.sendall(_frame(6, 0x1, 0, payload))
                assert kind != 7, f"GOAWAY instead of ending the stream: {payload!r}"
                if stream == 1 and (kind == 3 or (kind == 1 and flags & 0x1)):
                    ended = time.monotonic() - started
    assert limit - 0.2 <= ended <= limit + 8


# --- errors: status codes and the HTTP API's messages ----------------------------------------------

def http_error(server: Server, path: str, body: dict) -> str:
    answer = httpx.post(f"{server.base}{path}", json=body)
    assert answer.status_code >= 400
    return answer.json()["error"]


@pytest.mark.parametrize("case", ["wrong shape", "unknown model", "unknown version", "non-finite", "wrong datatype",
                                  "batch too large"])
def test_errors_have_status_codes_and_the_http_messages(client: triton.InferenceServerClient, server: Server,
                                                        case: str) -> None:
    model, version, datatype, images = MODEL, "", "FP32", digits(1)
    code = "StatusCode.INVALID_ARGUMENT"
    if case == "wrong shape":
        images = images[:, :, :27]
    elif case == "unknown model":
        model, code = "simple_cnm", "StatusCode.NOT_FOUND"
    elif case == "unknown version":
        version, code = "7", "StatusCode.NOT_FOUND"
    elif case == "non-finite":
        images = images.copy()
        images[0, 0, 0, :2] = [np.nan, np.inf]
    elif case == "wrong datatype":
        datatype, images = "FP64", images.astype(np.float64)
    elif case == "batch too large":
        images = digits(65)
    tensor = triton.InferInput("input", list(images.shape), datatype)
    tensor.set_data_from_numpy(images)
    error = grpc_error(lambda: client.infer(model, [tensor], model_version=version))
    assert error.status() == code
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    data = np.nan_to_num(images, nan=0.0, posinf=0.0).ravel().tolist() if case != "non-finite" else None
    body = {"inputs": [{"name": "input", "shape": list(images.shape), "datatype": datatype,
                        "data": data if data is not None else []}]}
    if case == "non-finite":  # JSON cannot carry NaN: compare with the binary HTTP path's message instead
        assert error.message() == "input 'input' holds 2 non-finite values (NaN or Inf); the model needs finite " \
                                  "numbers (the server's allow_non_finite setting accepts them)"
    else:
        assert error.message() == http_error(server, path, body)


def test_malformed_requests_get_invalid_argument(stub) -> None:
    images = digits(1)
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name="input", datatype="FP32", shape=[1, 1, 28, 28])
    cases = {
        "raw count": (service_pb2.ModelInferRequest(model_name=MODEL, inputs=[tensor],
                                                    raw_input_contents=[images.tobytes(), b"x"]),
                      "raw_input_contents has 2 entries for 1 inputs"),
        "raw size": (service_pb2.ModelInferRequest(model_name=MODEL, inputs=[tensor], raw_input_contents=[b"1234"]),
                     "needs 3136 bytes but the raw_input_contents entry's size is 4"),
        "typed count": (service_pb2.ModelInferRequest(model_name=MODEL, inputs=[
            service_pb2.ModelInferRequest.InferInputTensor(
                name="input", datatype="FP32", shape=[1, 1, 28, 28],
                contents=service_pb2.InferTensorContents(fp32_contents=[1.0, 2.0]))]),
            "holds 784 elements but contents.fp32_contents has 2"),
        "no inputs": (service_pb2.ModelInferRequest(model_name=MODEL), "the request needs at least one input"),
        "unknown output": (service_pb2.ModelInferRequest(
            model_name=MODEL, inputs=[tensor], raw_input_contents=[images.tobytes()],
            outputs=[service_pb2.ModelInferRequest.InferRequestedOutputTensor(name="probs")]),
            "unknown output 'probs'"),
        "bad name": (service_pb2.ModelInferRequest(model_name="../etc", inputs=[tensor]), "invalid model name '../etc'"),
    }
    for name, (request, message) in cases.items():
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert message in caught.value.details(), (name, caught.value.details())


def test_bytes_that_are_not_protobuf_get_invalid_argument(server: Server) -> None:
    with grpc.insecure_channel(server.grpc_url) as channel:
        for method in ("ModelInfer", "ModelMetadata", "RepositoryModelLoad"):
            call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")  # raw bytes in and out
            with pytest.raises(grpc.RpcError) as caught:
                call(b"\xff\xff\xff")
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert caught.value.details().startswith(f"the {method} request is not a valid protobuf message"), \
                caught.value.details()
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
        (answer,) = list(stream(iter([b"\xff\xff\xff"])))
        reply = service_pb2.ModelStreamInferResponse.FromString(answer)
        assert reply.error_message.startswith("the ModelStreamInfer request is not a valid protobuf message")


CLIENT_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.UNIMPLEMENTED}


@st.composite
def infer_messages(draw) -> bytes:
    """A ModelInferRequest with fuzzed names, datatypes, shapes, contents and parameters, serialized and
    then possibly cut or bit-flipped."""
    tensor = service_pb2.ModelInferRequest.InferInputTensor(
        name=draw(st.sampled_from(["input", "input", "x", ""])),
        datatype=draw(st.sampled_from(["FP32", "FP32", "FP16", "INT64", "BYTES", "fp32", ""])),
        shape=draw(st.lists(st.integers(-2**62, 2**62) | st.sampled_from([1, 28, 64, 65, 0]), max_size=5)))
    request = service_pb2.ModelInferRequest(model_name=draw(st.sampled_from([MODEL, MODEL, "nope", "../x", ""])),
                                            model_version=draw(st.sampled_from(["", "1", "0", "-1", "9" * 30])))
    if draw(st.booleans()):
        tensor.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=800)))
    for key in draw(st.lists(st.sampled_from(["shared_memory_region", "binary_data_size", "classification"]),
                             max_size=2)):
        tensor.parameters[key].int64_param = draw(st.integers(-5, 5))
    request.inputs.append(tensor)
    for _ in range(draw(st.integers(0, 2))):
        request.raw_input_contents.append(draw(st.binary(max_size=4000)))
    if draw(st.booleans()):
        output = request.outputs.add(name=draw(st.sampled_from(["logits", "probs"])))
        output.parameters["classification"].string_param = draw(st.sampled_from(["3", ""]))
    data = request.SerializeToString()
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + bytes(b ^ 0xFF for b in data[cut:cut + 3])
    return data


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(message=infer_messages())
def test_fuzzed_grpc_requests_never_get_a_server_error(server: Server, fuzz_channel, message: bytes) -> None:
    call = fuzz_channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    try:
        call(message, timeout=30)
    except grpc.RpcError as error:
        assert error.code() in CLIENT_CODES, (error.code(), error.details())
        assert error.details()


@pytest.fixture(scope="module")
def fuzz_channel(server: Server):
    with grpc.insecure_channel(server.grpc_url) as channel:
        yield channel


def test_connections_that_never_finish_the_http2_handshake_are_closed(server: Server, client) -> None:
    """10 TCP connections to the gRPC port, half silent, half stopping inside the HTTP/2 preface:
    grpc closes each after header_timeout_s (its own default is 120 s)."""
    import socket

    started = time.monotonic()
    connections = []
    for index in range(10):
        connection = socket.create_connection(("127.0.0.1", server.grpc_port), timeout=30)
        if index % 2:
            connection.sendall(b"PRI * HTTP/2.0\r\n\r\nSM")
        connections.append(connection)
    closed_after = []
    for connection in connections:
        with connection:
            try:
                while connection.recv(4096):
                    pass
            except ConnectionResetError:
                pass
            closed_after.append(time.monotonic() - started)
    assert HANDSHAKE_TIMEOUT_S * 0.9 <= min(closed_after) and max(closed_after) < HANDSHAKE_TIMEOUT_S + 10, closed_after
    assert client.is_server_live()


def test_message_over_the_body_limit_is_resource_exhausted(client: triton.InferenceServerClient) -> None:
    images = digits(400)  # 1.25 MB > the 1 MiB limit
    tensor = triton.InferInput("input", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    error = grpc_error(lambda: client.infer(MODEL, [tensor]))
    assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert client.is_server_live()


# --- statistics ----------------------------------------------------------------------------------

def test_statistics_hold_the_invariants_perf_analyzer_relies_on(server: Server, client) -> None:
    since_ms = int(time.time() * 1000)
    before = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    sizes = [1 + i % 6 for i in range(30)]

    async def run() -> None:
        async with triton_aio.InferenceServerClient(server.grpc_url) as aio:
            await asyncio.gather(*(aio.infer(MODEL, [infer_input(digits(rows, seed=i), triton_aio)])
                                   for i, rows in enumerate(sizes)))
            for _ in range(2):
                with pytest.raises(InferenceServerException):
                    await aio.infer(MODEL, [infer_input(digits(1)[:, :, :27], triton_aio)])

    asyncio.run(run())
    after = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    assert_statistics_invariants(before, after, successes=len(sizes), rows=sum(sizes), failures=2,
                                 max_batch_size=64, since_ms=since_ms)
    over_http = httpx.get(f"{server.base}/v2/models/{MODEL}/stats").json()["model_stats"][0]
    assert over_http["inference_count"] == int(after["inference_count"])  # one table behind both APIs


# --- model repository ----------------------------------------------------------------------------

def test_repository_index_unload_and_load(client: triton.InferenceServerClient, reference) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    assert index == [{"name": MODEL, "version": "1", "state": "READY"}]
    client.unload_model(MODEL)
    try:
        # an unloaded model is not one the server is asked to serve: the server stays ready
        assert not client.is_model_ready(MODEL) and client.is_server_ready()
        error = grpc_error(lambda: client.infer(MODEL, [infer_input(digits(1))]))
        assert error.status() == "StatusCode.NOT_FOUND" and "is not ready (unavailable: unloaded)" in error.message()
        assert client.get_model_repository_index(as_json=True)["models"] == [
            {"name": MODEL, "state": "UNAVAILABLE", "reason": "unloaded"}]
    finally:
        client.load_model(MODEL)
    assert client.is_model_ready(MODEL)
    images = digits(2, seed=9)
    assert np.array_equal(client.infer(MODEL, [infer_input(images)]).as_numpy("logits"), expected(reference, images))
    missing = grpc_error(lambda: client.load_model("missing_model"))
    assert missing.status() == "StatusCode.NOT_FOUND" and "not in the model repository" in missing.message()
    overrides = grpc_error(lambda: client.load_model(MODEL, config='{"max_batch_size": 2}'))
    assert overrides.status() == "StatusCode.INVALID_ARGUMENT" and "not supported" in overrides.message()


# --- authentication ------------------------------------------------------------------------------

def test_bearer_token_in_metadata(exported_repository: Path, tmp_path: Path) -> None:
    repo = tmp_path / "model_repository"
    shutil.copytree(exported_repository, repo)
    with running_server(repo, {"CNNSPEC_SERVE_AUTH_TOKEN": "s3cret"}, grpc=True) as secured:
        with triton.InferenceServerClient(secured.grpc_url) as anonymous:
            assert anonymous.is_server_live() and anonymous.is_server_ready()  # probes stay public
            denied = grpc_error(lambda: anonymous.get_model_metadata(MODEL))
            assert denied.status() == "StatusCode.UNAUTHENTICATED" and "bearer token" in denied.message()
            wrong = grpc_error(lambda: anonymous.infer(MODEL, [infer_input(digits(1))],
                                                       headers={"authorization": "Bearer nope"}))
            assert wrong.status() == "StatusCode.UNAUTHENTICATED" and wrong.message() == "invalid bearer token"
            good = anonymous.infer(MODEL, [infer_input(digits(1))], headers={"authorization": "Bearer s3cret"})
            assert good.as_numpy("logits").shape == (1, 10)
            answers: queue.Queue = queue.Queue()
            anonymous.start_stream(callback=lambda result, error: answers.put(error))
            try:
                anonymous.async_stream_infer(MODEL, [infer_input(digits(1))])
            except InferenceServerException:
                pass  # the server may have ended the stream already; the callback has its status
            streamed = answers.get(timeout=30)
            anonymous.stop_stream()
            assert streamed is not None and "UNAUTHENTICATED" in str(streamed.status())
