"""The baseline for benchmarks/serve_load.py: a plain FastAPI + onnxruntime V2 inference endpoint.

What a competent engineer writes without dynamic batching: one onnxruntime session created once at
startup (``allow_spinning=0`` so its idle threads do not steal the CPU from the HTTP side), one
``POST /v2/models/{name}/infer`` that reads the raw body (the official tritonclient sends no
Content-Type, so no pydantic body model), accepts JSON tensors and Triton's binary tensor
extension, runs the request alone, and answers in the same form. The ~50 us batch-1 inference runs
inline on the event loop: handing it to a thread pool would cost more than it takes.

    python benchmarks/plain_endpoint.py --model MODEL_REPO/simple_cnn/1/model.onnx --port 8001
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request, Response

HEADER_LENGTH = "inference-header-content-length"


def create_app(model_path: Path, model_name: str) -> FastAPI:
    """A FastAPI app serving one ONNX model (first input, first output) over V2, no batching."""
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name
    app = FastAPI()

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request) -> Response:
        if name != model_name:
            return Response(json.dumps({"error": f"unknown model '{name}'"}), 404,
                            media_type="application/json")
        body = await request.body()
        header_length = request.headers.get(HEADER_LENGTH)
        try:
            if header_length is None:
                header = json.loads(body)
                tensor = header["inputs"][0]
                x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
            else:
                split = int(header_length)
                header = json.loads(body[:split])
                tensor = header["inputs"][0]
                x = np.frombuffer(body[split:], dtype="<f4").reshape(tensor["shape"])
        except (ValueError, KeyError, IndexError, TypeError) as error:
            return Response(json.dumps({"error": f"bad request: {error}"}), 400,
                            media_type="application/json")
        y = session.run([output_name], {input_name: x})[0]
        return _answer(header, model_name, output_name, y, binary=header_length is not None)

    return app


def _answer(request: dict, model_name: str, output_name: str, y: np.ndarray, binary: bool) -> Response:
    """The V2 response: JSON data, or the JSON header followed by the raw little-endian bytes."""
    output = {"name": output_name, "datatype": "FP32", "shape": list(y.shape)}
    reply: dict = {"model_name": model_name, "outputs": [output]}
    if "id" in request:
        reply["id"] = request["id"]
    if not binary:
        output["data"] = y.ravel().tolist()
        return Response(json.dumps(reply), media_type="application/json")
    raw = y.astype("<f4", copy=False).tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps(reply).encode()
    return Response(header + raw, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="path to model.onnx")
    parser.add_argument("--name", default="simple_cnn", help="model name in the URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(create_app(args.model, args.name), host=args.host, port=args.port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
