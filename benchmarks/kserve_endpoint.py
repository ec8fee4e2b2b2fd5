"""The second baseline for benchmarks/serve_load.py: KServe's own ModelServer on the same ONNX file.

A minimal ``kserve.Model`` whose ``predict`` runs onnxruntime on the request's first input, served
by ``kserve.ModelServer`` with its REST (V2) and gRPC (``inference.GRPCInferenceService``)
endpoints: what a KServe user deploys for a custom ONNX predictor. One onnxruntime session with
``allow_spinning=0`` (as every server in the benchmark), no batching (KServe's ModelServer has
none). KServe binds 0.0.0.0 and [::] and has no option for it, so this script wraps the two bind
calls to listen on 127.0.0.1 only.

    python benchmarks/kserve_endpoint.py --model MODEL_REPO/simple_cnn/1/model.onnx --name simple_cnn \\
        --http-port 8080 --grpc-port 8081
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def bind_loopback_only() -> None:
    """Make KServe's uvicorn and grpc servers listen on 127.0.0.1 instead of every interface."""
    import grpc.aio
    import uvicorn

    config_init = uvicorn.Config.__init__

    def loopback_config(self, *args, **kwargs):
        kwargs["host"] = "127.0.0.1"
        config_init(self, *args, **kwargs)

    uvicorn.Config.__init__ = loopback_config
    make_server = grpc.aio.server

    def loopback_server(*args, **kwargs):
        server = make_server(*args, **kwargs)
        add_port = server.add_insecure_port
        server.add_insecure_port = lambda address: add_port(address.replace("[::]", "127.0.0.1"))
        return server

    grpc.aio.server = loopback_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--name", default="simple_cnn")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=8081)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # kserve.model_server parses sys.argv when imported
    bind_loopback_only()

    import kserve
    import numpy as np
    import onnxruntime as ort
    from kserve import InferOutput, InferRequest, InferResponse

    class OnnxModel(kserve.Model):
        """One ONNX file; its first input in, its first output out."""

        def __init__(self, name: str, path: Path):
            super().__init__(name)
            options = ort.SessionOptions()
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.input_name = self.session.get_inputs()[0].name
            self.output_name = self.session.get_outputs()[0].name
            self.ready = True

        async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
            array = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
            logits = self.session.run([self.output_name], {self.input_name: array})[0]
            # raw bytes when the REST client asks for binary outputs, and always over gRPC (the cheap form)
            binary = payload.from_grpc or any((o.parameters or {}).get("binary_data")
                                              for o in (payload.request_outputs or []))
            output = InferOutput(name=self.output_name, shape=list(logits.shape), datatype="FP32")
            output.set_data_from_numpy(logits, binary_data=bool(binary))
            return InferResponse(model_name=self.name, infer_outputs=[output], response_id=payload.id or "",
                                 use_binary_outputs=bool(binary))

    model = OnnxModel(args.name, args.model)
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=True,
                       workers=1).start([model])


if __name__ == "__main__":
    main()
