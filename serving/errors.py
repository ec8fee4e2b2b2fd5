"""Errors the service reports: each carries the HTTP status it maps to and a message a client can act on.

Every handler raises one of these; one place (``app.error_response``) turns it into
``{"error": "..."}`` with the status. They subclass ``cnnspec.errors.CnnspecError`` so that
``cnnspec serve`` prints startup failures as one line instead of a traceback.
"""

from __future__ import annotations

from cnnspec.deploy import model_config
from cnnspec.errors import CnnspecError


class ServingError(CnnspecError):
    """Base class; ``status`` is the HTTP status code of the response."""

    status = 500


class BadRequest(ServingError):
    """The client's request is malformed or does not fit the model (400)."""

    status = 400


class Unauthorized(ServingError):
    """Missing or wrong bearer token (401)."""

    status = 401


class NotFound(ServingError):
    """Unknown model, version or path (404)."""

    status = 404


class PayloadTooLarge(ServingError):
    """The request body (or its decompressed form) exceeds the configured limit (413)."""

    status = 413


class UnsupportedMediaType(ServingError):
    """An unsupported Content-Encoding or upload type (415)."""

    status = 415


class Unavailable(ServingError):
    """The model or the server is not ready, e.g. while shutting down (503)."""

    status = 503


class ConfigError(ServingError, model_config.ConfigError):
    """A config.pbtxt that is not valid Triton model configuration text (deploy's codec raises the
    base class; the repository re-raises it as this, with its HTTP status)."""

    status = 400


class ModelLoadError(ServingError):
    """A model version could not be loaded (bad files, mismatched config, missing provider)."""

    status = 400


class StartupError(ServingError):
    """The server cannot start as configured (e.g. CUDA requested but unavailable)."""
