"""The docker SDK's exceptions as the runtime Protocol's: unreachable engine or refused request."""

from __future__ import annotations

import docker.errors
import requests.exceptions

from enforcer.reconcile.runtime import ImageNotFound, RuntimeRequestError, RuntimeUnavailable


def translate(exc: BaseException) -> Exception:
    if isinstance(exc, docker.errors.NotFound):
        if "image" in str(exc).lower() or "manifest" in str(exc).lower():
            return ImageNotFound(_explain(exc))
        return RuntimeRequestError(_explain(exc))
    if isinstance(exc, docker.errors.APIError):
        return RuntimeRequestError(_explain(exc))
    if isinstance(exc, requests.exceptions.RequestException | ConnectionError | OSError):
        return RuntimeUnavailable(f"Docker engine unreachable: {exc}")
    if isinstance(exc, docker.errors.DockerException):
        return RuntimeUnavailable(f"Docker engine unreachable: {exc}")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


def _explain(exc: docker.errors.APIError) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
