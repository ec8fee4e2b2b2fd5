"""The serving app in process (Starlette's TestClient / httpx over ASGI) and its parts: settings, the
config.pbtxt parser against Triton's schema, the batcher, auth, load/unload, watch mode, reload
under load, draining, startup errors, and the promise that serving never imports torch."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import AsyncIterator

import httpx
import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from conftest import REPO_ROOT
from serving.__main__ import parse_args, settings_from
from serving.app import ServingApp
from serving.batching import Arrivals, Batcher
from cnnspec.deploy import model_config
from cnnspec.deploy.model_config import parse_model_config
from serving.errors import ConfigError, ModelLoadError, ServingError
from serving.metrics import Metrics
from serving.statistics import VersionStats
from serving.repository import ModelTable
from serving.server import build_app
from serving.settings import ServeSettings

MODEL = "simple_cnn"


@pytest.fixture
def repo(exported_repository: Path, tmp_path: Path) -> Path:
    """A private copy of the exported repository that a test may change."""
    shutil.copytree(exported_repository, tmp_path / "model_repository")
    return tmp_path / "model_repository"


@asynccontextmanager
async def serving_client(settings: ServeSettings) -> AsyncIterator[tuple[ServingApp, httpx.AsyncClient]]:
    """The app started as its lifespan starts it, and an httpx client talking ASGI to it."""
    app = ServingApp(settings)
    await app.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serving") as client:
            yield app, client
    finally:
        await app.shutdown()


def infer_body(images: np.ndarray) -> dict:
    return {"inputs": [{"name": "input", "shape": list(images.shape), "datatype": "FP32",
                        "data": images.ravel().tolist()}]}


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 1, 28, 28)).astype(np.float32)


def add_version(repo: Path, version: int, model_bytes: bytes | None = None) -> None:
    """A new version folder through cnnspec.deploy.repository (atomic, as `cnnspec export` writes it)."""
    from cnnspec.deploy.repository import write_model

    folder = repo / MODEL
    data = model_bytes if model_bytes is not None else (folder / "1" / "model.onnx").read_bytes()
    write_model(repo, MODEL, version, data, config_text=(folder / "config.pbtxt").read_text(),
                labels_text=(folder / "labels.txt").read_text())


def copy_model(repo: Path, name: str) -> None:
    """Another model folder: simple_cnn's files under a new name (config.pbtxt's name must match)."""
    shutil.copytree(repo / MODEL, repo / name)
    config = repo / name / "config.pbtxt"
    config.write_text(config.read_text().replace(f'name: "{MODEL}"', f'name: "{name}"'))


# --- settings and command line -----------------------------------------------------------------

def test_settings_defaults_environment_and_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    defaults = ServeSettings(model_repository=tmp_path)
    assert (defaults.host, defaults.port, defaults.device, defaults.intra_op_threads) == ("127.0.0.1", 8000, "cpu", 2)
    assert defaults.max_body_bytes == 8 * 1024 * 1024 and defaults.auth_token is None and not defaults.watch
    monkeypatch.setenv("CNNSPEC_SERVE_PORT", "9100")
    monkeypatch.setenv("CNNSPEC_SERVE_AUTH_TOKEN", "s3cret")
    monkeypatch.setenv("CNNSPEC_SERVE_MODEL_REPOSITORY", str(tmp_path))
    from_env = settings_from(parse_args([]))
    assert from_env.port == 9100 and from_env.auth_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(from_env)
    assert settings_from(parse_args(["--port", "9200", "--watch"])).port == 9200
    with pytest.raises(ServingError, match="port: Input should be less than or equal to 65535"):
        settings_from(parse_args(["--port", "70000"]))


def test_every_setting_is_a_flag_of_both_command_lines(tmp_path: Path) -> None:
    """`python -m serving` and `cnnspec serve` take their flags from ServeSettings' fields: a value
    given to each flag reaches the settings the same way through both parsers."""
    from typing import Literal, get_args, get_origin

    from pydantic import SecretStr

    from cnnspec.cli import serve_command

    samples = {bool: True, int: 4096, float: 2.5, str: "token-or-host", Path: tmp_path}
    argv, expected = [], {}
    for name, field in ServeSettings.model_fields.items():
        option = "--" + name.replace("_", "-")
        annotation = field.annotation
        if get_origin(annotation) is not Literal and type(None) in get_args(annotation):  # X | None
            annotation, = [a for a in get_args(annotation) if a is not type(None)]
        if get_origin(annotation) is Literal:
            value = get_args(annotation)[-1]  # not the default, so the flag visibly arrives
        else:
            value = samples[str if annotation is SecretStr else annotation]
        argv += [option] if value is True else [option, str(value)]
        expected[name] = value
    assert set(expected) == set(ServeSettings.model_fields) and len(expected) >= 20

    assert parse_args(argv) == expected
    repository_at = argv.index("--model-repository")
    click_argv = [str(tmp_path), *argv[:repository_at], *argv[repository_at + 2:]]
    context = serve_command.make_context("serve", click_argv)
    assert {k: v for k, v in context.params.items() if v is not None} == expected
    settings = settings_from(parse_args(argv))
    for name, value in expected.items():
        got = getattr(settings, name)
        assert (got.get_secret_value() if isinstance(got, SecretStr) else got) == value, name
    assert parse_args(["--no-watch"]) == {"watch": False}
    assert serve_command.make_context("serve", [str(tmp_path), "--no-watch"]).params["watch"] is False


def test_startup_errors_are_one_line_and_exit_1(exported_repository: Path, tmp_path: Path) -> None:
    import onnxruntime

    missing = subprocess.run([sys.executable, "-m", "cnnspec", "serve", str(tmp_path / "nowhere")],
                             capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert missing.returncode == 1 and "is not a folder" in missing.stderr and "Traceback" not in missing.stderr
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.fail("this test expects the CPU build of onnxruntime (the project's default)")
    cuda = subprocess.run([sys.executable, "-m", "serving", "--model-repository", str(exported_repository),
                           "--device", "cuda"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert cuda.returncode == 1 and "Traceback" not in cuda.stderr
    assert "--device cuda was requested but onnxruntime has no CUDAExecutionProvider" in cuda.stderr
    assert "onnxruntime-gpu" in cuda.stderr


def test_serving_never_imports_torch(exported_repository: Path) -> None:
    script = f"""
import asyncio, sys
import httpx
from serving.server import build_app
from serving.settings import ServeSettings
app = build_app(ServeSettings(model_repository={str(exported_repository)!r}))
async def main():
    await app.startup()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serving") as client:
        body = {{"inputs": [{{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}}]}}
        assert (await client.post("/v2/models/simple_cnn/infer", json=body)).status_code == 200
    await app.shutdown()
asyncio.run(main())
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "tritonclient", "grpc"))
print("HEAVY", heavy)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout


# --- config.pbtxt: our parser against Triton's own schema ---------------------------------------

def test_config_parser_matches_tritons_schema(exported_repository: Path) -> None:
    text = (exported_repository / MODEL / "config.pbtxt").read_text()
    ours = parse_model_config(text)
    tritons = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert json_format.ParseDict(ours.json, model_config_pb2.ModelConfig()) == tritons
    assert (ours.max_batch_size, ours.max_queue_delay_us, ours.instance_count) == (64, 2000, 1)
    assert ours.inputs[0].dims == (1, 28, 28) and ours.outputs[0].label_filename == "labels.txt"
    assert ours.version_policy == ("all", ())


@pytest.mark.parametrize("text, message", [
    ('max_batch_sise: 8', '1:1: error: message type "inference.ModelConfig" has no field named "max_batch_sise"; '
                          "did you mean 'max_batch_size'?"),
    ('max_batch_size: "8"', "1:17: error: field 'max_batch_size' takes an integer, found a string"),
    ('input [ { data_type: TYPE_FP23 } ]', "1:22: error: unknown value 'TYPE_FP23' for enum field 'data_type'"),
    ('name: "a"\nname: "b"', "2:1: error: non-repeated field 'name' is given twice"),
    ('dynamic_batching { max_queue_delay: 5 }', 'has no field named "max_queue_delay"'),
    ('input [ { dims: [1, 2 } ]', "1:23: error: field 'dims' takes an integer, found '}'"),
])
def test_config_parser_rejects_what_triton_rejects(text: str, message: str) -> None:
    with pytest.raises(text_format.ParseError):
        text_format.Parse(text, model_config_pb2.ModelConfig())
    with pytest.raises(model_config.ConfigError) as error:
        parse_model_config(text)
    assert message in str(error.value)


@pytest.mark.parametrize("serving, policy, filename", [
    (model_config.ServingConfig(), ("all", ()), "model.onnx"),
    (model_config.ServingConfig(8, 0, "gpu", 3), ("latest", (2,)), "model.onnx"),
    (model_config.ServingConfig(1, 100, "auto", 1), ("specific", (1, 3)), "other.onnx"),
])
def test_config_renderer_writes_what_triton_and_the_parser_read_back(serving, policy, filename) -> None:
    """One codec: rendered text parses with Triton's schema to the same message as our parser's
    JSON view of it, and back into an equal ModelConfig."""
    config = replace(model_config.classifier_config("digits", (3, 32, 24), 7, serving),
                     version_policy=policy, default_model_filename=filename)
    text = model_config.render_model_config(config)
    tritons = text_format.Parse(text, model_config_pb2.ModelConfig())
    ours = parse_model_config(text)
    assert ours == config
    assert json_format.ParseDict(ours.json, model_config_pb2.ModelConfig()) == tritons
    assert (tritons.max_batch_size, list(tritons.input[0].dims), tritons.output[0].label_filename) == (
        serving.max_batch_size, [3, 32, 24], "labels.txt")
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(tritons.instance_group[0].kind) == config.instance_kind


def test_exported_config_is_the_renderers_text(exported_repository: Path) -> None:
    text = (exported_repository / MODEL / "config.pbtxt").read_text()
    assert model_config.render_model_config(parse_model_config(text)) == text


@pytest.mark.parametrize("value", ['plain', 'quote " and backslash \\', 'new\nline\ttab', 'ünïcødé 字'])
def test_config_strings_round_trip_like_tritons(value: str) -> None:
    config = replace(model_config.classifier_config("x", (1, 28, 28), 10, model_config.ServingConfig()), name=value)
    text = model_config.render_model_config(config)
    assert text_format.Parse(text, model_config_pb2.ModelConfig()).name == value
    assert parse_model_config(text).name == value


def test_startup_fails_fast_on_a_broken_repository(repo: Path) -> None:
    config = repo / MODEL / "config.pbtxt"
    config.write_text(config.read_text().replace("dims: [ 10 ]", "dims: [ 12 ]"))
    with pytest.raises(ModelLoadError, match=r"output 'logits' has dims \[12\] in config.pbtxt but \['batch', 10\]"):
        build_app(ServeSettings(model_repository=repo))
    config.write_text(config.read_text().replace("max_batch_size", "max_batch_sise"))
    with pytest.raises(ConfigError, match=r"simple_cnn/config.pbtxt:4:1: error: .*did you mean 'max_batch_size'"):
        build_app(ServeSettings(model_repository=repo))


# --- the batcher ---------------------------------------------------------------------------------

def make_batcher(repo: Path, delay_us: int, arrivals: Arrivals | None = None) -> tuple[Batcher, Metrics]:
    metrics = Metrics()
    table = ModelTable(ServeSettings(model_repository=repo), metrics)
    table.load_all_sync()
    version = table.entries[MODEL].versions[1].model
    return Batcher(version, delay_us, 1, metrics.for_model(MODEL), VersionStats(MODEL, 1), arrivals), metrics


def test_batcher_coalesces_requests_and_splits_results_back(exported_repository: Path) -> None:
    from cnnspec.deploy.sessions import new_session

    batcher, _ = make_batcher(exported_repository, delay_us=0)
    reference = new_session(exported_repository / MODEL / "1" / "model.onnx")
    requests = [images(1 + i % 4, seed=i) for i in range(40)]  # 100 rows in all, max_batch_size 64

    async def run() -> list[list[np.ndarray]]:
        return await asyncio.gather(*(batcher.submit({"input": r}, len(r)) for r in requests))

    results = asyncio.run(run())
    for request, outputs in zip(requests, results):
        assert np.array_equal(outputs[0], reference.run(None, {"input": request})[0])
    sizes = sorted(size for size, d in batcher.stats.batches.items() for _ in range(d.compute_infer.count))
    assert sum(sizes) == 100 and max(sizes) <= 64 and len(sizes) == 2  # submitted in one turn: two full runs


def test_batcher_never_waits_for_the_delay_when_nothing_else_is_coming(exported_repository: Path) -> None:
    batcher, _ = make_batcher(exported_repository, delay_us=30_000_000)  # a 30 s max_queue_delay

    async def run() -> list[np.ndarray]:
        return await asyncio.wait_for(batcher.submit({"input": images(1)}, 1), timeout=10)

    assert asyncio.run(run())[0].shape == (1, 10)


def test_batcher_waits_for_requests_on_their_way(exported_repository: Path) -> None:
    arrivals = Arrivals()
    batcher, _ = make_batcher(exported_repository, delay_us=30_000_000, arrivals=arrivals)

    async def run() -> None:
        arrivals.start()  # a request's headers are in, its body is still arriving
        first = batcher.submit({"input": images(1)}, 1)
        await asyncio.sleep(0.05)
        assert not first.done()  # held back for the request on its way
        arrivals.done()
        second = batcher.submit({"input": images(2)}, 2)
        await asyncio.wait_for(asyncio.gather(first, second), timeout=10)

    asyncio.run(run())
    assert batcher.stats.execution_count == 1 and batcher.stats.inference_count == 3


def test_batcher_does_not_wait_for_a_slow_body(exported_repository: Path) -> None:
    arrivals = Arrivals()
    batcher, _ = make_batcher(exported_repository, delay_us=30_000_000, arrivals=arrivals)
    arrivals.start()  # a client that started sending a minute ago and is still trickling its body
    arrivals.last_ns -= 60 * 10**9

    async def run() -> None:  # waiting out the 30 s delay would trip the 10 s timeout
        await asyncio.wait_for(batcher.submit({"input": images(1)}, 1), timeout=10)

    asyncio.run(run())
    assert batcher.stats.execution_count == 1


# --- the app in process --------------------------------------------------------------------------

def test_bearer_token_auth(exported_repository: Path) -> None:
    body = infer_body(images(1))

    async def run() -> None:
        settings = ServeSettings(model_repository=exported_repository, auth_token="s3cret")
        async with serving_client(settings) as (_, client):
            assert (await client.get("/v2/health/live")).status_code == 200
            assert (await client.get("/v2/health/ready")).status_code == 200
            for method, path in (("GET", "/v2"), ("GET", f"/v2/models/{MODEL}"), ("POST", f"/v2/models/{MODEL}/infer"),
                                 ("GET", "/metrics"), ("POST", "/v2/repository/index")):
                denied = await client.request(method, path, json=body)
                assert denied.status_code == 401 and "bearer token" in denied.json()["error"]
                assert denied.headers["www-authenticate"].startswith("Bearer")
            wrong = await client.post(f"/v2/models/{MODEL}/infer", json=body, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.json() == {"error": "invalid bearer token"}
            good = await client.post(f"/v2/models/{MODEL}/infer", json=body, headers={"Authorization": "Bearer s3cret"})
            assert good.status_code == 200 and good.json()["outputs"][0]["shape"] == [1, 10]
        public = ServeSettings(model_repository=exported_repository, auth_token="s3cret", metrics_public=True)
        async with serving_client(public) as (_, client):
            assert (await client.get("/metrics")).status_code == 200
            assert (await client.get("/v2")).status_code == 401
        async with serving_client(ServeSettings(model_repository=exported_repository)) as (_, client):
            assert (await client.get("/v2")).status_code == 200  # off by default

    asyncio.run(run())


def test_unload_load_and_repository_index(repo: Path) -> None:
    body = infer_body(images(1))

    async def run() -> None:
        async with serving_client(ServeSettings(model_repository=repo)) as (_, client):
            assert (await client.post("/v2/repository/models/simple_cnn/unload", json={})).status_code == 200
            assert (await client.get(f"/v2/models/{MODEL}/ready")).status_code == 404
            # the server serves every model it is asked to: an unloaded one is not asked for
            assert (await client.get("/v2/health/ready")).json() == {"ready": True}
            gone = await client.post(f"/v2/models/{MODEL}/infer", json=body)
            assert gone.status_code == 404 and "is not ready (unavailable: unloaded)" in gone.json()["error"]
            assert (await client.post("/v2/repository/index")).json() == [
                {"name": MODEL, "state": "UNAVAILABLE", "reason": "unloaded"}]
            add_version(repo, 2)
            assert (await client.post("/v2/repository/models/simple_cnn/load", content=b"")).status_code == 200
            assert (await client.get(f"/v2/models/{MODEL}")).json()["versions"] == ["1", "2"]
            assert (await client.post(f"/v2/models/{MODEL}/versions/2/infer", json=body)).json()["model_version"] == "2"
            latest = await client.post(f"/v2/models/{MODEL}/infer", json=body)
            assert latest.json()["model_version"] == "2"
            override = await client.post("/v2/repository/models/simple_cnn/load", json={"parameters": {"config": "{}"}})
            assert override.status_code == 400 and "not supported" in override.json()["error"]
            # a second model in the same repository, loaded while the first keeps serving
            await asyncio.to_thread(copy_model, repo, "digits_b")
            assert (await client.post("/v2/repository/models/digits_b/load")).status_code == 200
            index = (await client.post("/v2/repository/index")).json()
            assert [(m["name"], m.get("version")) for m in index] == [("digits_b", "1"), ("digits_b", "2"), (MODEL, "1"), (MODEL, "2")]
            other = await client.post("/v2/models/digits_b/infer", json=body)
            assert other.status_code == 200 and other.json()["model_name"] == "digits_b"

    asyncio.run(run())


def test_unloading_one_model_leaves_the_server_ready_for_the_others(repo: Path) -> None:
    """A Kubernetes readiness probe on /v2/health/ready must not take a replica out of rotation
    because one of its models was unloaded on request."""
    copy_model(repo, "digits_b")
    body = infer_body(images(1))

    async def run() -> None:
        async with serving_client(ServeSettings(model_repository=repo)) as (app, client):
            assert (await client.post("/v2/repository/models/digits_b/unload")).status_code == 200
            ready = await client.get("/v2/health/ready")
            assert (ready.status_code, ready.json()) == (200, {"ready": True}) and app.is_ready()
            assert (await client.get("/v2/models/digits_b/ready")).status_code == 404
            assert (await client.get(f"/v2/models/{MODEL}/ready")).status_code == 200
            assert (await client.post(f"/v2/models/{MODEL}/infer", json=body)).status_code == 200
            assert (await client.post("/v2/repository/models/digits_b/load")).status_code == 200
            assert (await client.get("/v2/health/ready")).status_code == 200
            app.table.entries["digits_b"].state = "UNAVAILABLE"  # a model it is asked to serve, not serving
            not_ready = await client.get("/v2/health/ready")
            assert (not_ready.status_code, not_ready.json()) == (503, {"ready": False, "error": "digits_b: unavailable"})

    asyncio.run(run())


def test_failed_reload_keeps_the_old_version_serving(repo: Path) -> None:
    body = infer_body(images(1))

    async def run() -> None:
        async with serving_client(ServeSettings(model_repository=repo)) as (_, client):
            add_version(repo, 2, b"this is not an onnx model")
            failed = await client.post("/v2/repository/models/simple_cnn/load")
            assert failed.status_code == 400
            assert "model 'simple_cnn' version 2: cannot load model.onnx" in failed.json()["error"]
            assert (await client.post(f"/v2/models/{MODEL}/infer", json=body)).json()["model_version"] == "1"

    asyncio.run(run())


def test_watch_mode_picks_up_a_new_version(repo: Path) -> None:
    async def run() -> None:
        settings = ServeSettings(model_repository=repo, watch=True, watch_interval_s=0.1)
        async with serving_client(settings) as (_, client):
            assert (await client.get(f"/v2/models/{MODEL}")).json()["versions"] == ["1"]
            await asyncio.to_thread(add_version, repo, 2)
            deadline = time.monotonic() + 20
            while (await client.get(f"/v2/models/{MODEL}")).json()["versions"] != ["1", "2"]:
                assert time.monotonic() < deadline, "watch mode did not load version 2"
                await asyncio.sleep(0.1)
            answer = await client.post(f"/v2/models/{MODEL}/infer", json=infer_body(images(1)))
            assert answer.json()["model_version"] == "2"

    asyncio.run(run())


def test_reload_under_load_fails_no_request(repo: Path) -> None:
    app = ServingApp(ServeSettings(model_repository=repo))
    bodies = [json.dumps(infer_body(images(1 + i % 3, seed=i))).encode() for i in range(8)]

    async def run() -> list[int]:
        await app.startup()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serving") as client:
            stop = asyncio.Event()

            async def traffic(worker: int) -> list[int]:
                statuses = []
                while not stop.is_set() or not statuses:
                    answer = await client.post(f"/v2/models/{MODEL}/infer", content=bodies[worker])
                    statuses.append(answer.status_code)
                return statuses

            workers = [asyncio.create_task(traffic(i)) for i in range(8)]
            for version in (2, 3):
                await asyncio.sleep(0.05)
                await asyncio.to_thread(add_version, repo, version)
                await app.table.load(MODEL)
            await asyncio.sleep(0.05)
            stop.set()
            statuses = [s for w in await asyncio.gather(*workers) for s in w]
        await app.shutdown()
        return statuses

    statuses = asyncio.run(run())
    assert len(statuses) >= 8 and set(statuses) == {200}
    assert sorted(app.table.entries[MODEL].versions) == [1, 2, 3]


def test_shutdown_drains_queued_batches(exported_repository: Path) -> None:
    app = ServingApp(ServeSettings(model_repository=exported_repository))

    async def run() -> tuple[list, int]:
        await app.startup()
        loaded = app.table.entries[MODEL].latest
        pending = [loaded.batcher.submit({"input": images(4, seed=i)}, 4) for i in range(30)]
        await app.shutdown()  # returns only when every queued batch has run
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serving") as client:
            late = await client.post(  # after shutdown, new requests get 503
                f"/v2/models/{MODEL}/infer", json=infer_body(images(1)))
        return [p.done() and p.result()[0].shape for p in pending], late.status_code

    shapes, late_status = asyncio.run(run())
    assert shapes == [(4, 10)] * 30
    assert late_status == 503


def test_python_m_serving_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0 and "`" not in out
    assert " ".join(out.split("\n\n")[1].split()) == (
        "Serve a model repository (the folder cnnspec export writes) with the KServe Open Inference Protocol "
        "(V2) over HTTP (and gRPC with --grpc-port), with dynamic batching. Flags override CNNSPEC_SERVE_* "
        "environment variables, which override the defaults; 'cnnspec serve MODEL_REPO' starts the same server.")
    assert "Folder written by 'cnnspec export' (Triton layout)." in " ".join(out.split())


def test_the_startup_line_names_a_url_a_local_client_can_reach() -> None:
    from serving.server import local_url

    assert local_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert local_url("::", 8000) == "http://[::1]:8000"
    assert local_url("10.1.2.3", 9000) == "http://10.1.2.3:9000"
