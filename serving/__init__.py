"""The cnnspec inference service: the KServe Open Inference Protocol (V2) over onnxruntime.

Start it with ``cnnspec serve MODEL_REPO`` or ``python -m serving --model-repository MODEL_REPO``;
embed it with ``serving.app.create_app(model_repository=...)`` (an ASGI app; also
``uvicorn --factory serving.app:create_app`` with ``CNNSPEC_SERVE_MODEL_REPOSITORY`` set).

Modules: ``settings`` (pydantic-settings), ``config`` (config.pbtxt), ``model`` (onnxruntime
sessions), ``repository`` (model folders and the live model table), ``batching`` (dynamic
batching), ``protocol`` (V2 JSON and binary tensors), ``http`` (bounded bodies, compression),
``classify`` (image uploads), ``metrics`` (Prometheus and Triton statistics), ``app`` (the ASGI
app), ``server`` (uvicorn). Never imports torch: the container image has none.
"""
