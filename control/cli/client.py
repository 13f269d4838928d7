"""The operator's HTTP client for control's API (used by the `edge-control` commands).

Plain `urllib` over TLS that trusts control's CA: one request per command needs no event loop.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ApiError", "Connection", "ControlClient"]

TIMEOUT = 30.0


class ApiError(Exception):
    """Control answered with an error, or could not be reached; the message is one line."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Connection:
    url: str
    token: str
    ca: Path | None  # control's CA (ca.pem); None: the system's trust store


class ControlClient:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        try:
            if connection.ca is not None:
                self._context = ssl.create_default_context(cafile=str(connection.ca))
            else:
                self._context = ssl.create_default_context()
        except (OSError, ssl.SSLError) as e:
            raise ApiError(f"cannot read the CA certificate {connection.ca}: {e}") from e

    def request(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> Any:
        url = self.connection.url.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.connection.token:
            headers["Authorization"] = f"Bearer {self.connection.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self._context) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise _api_error(e) from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise ApiError(
                    f"cannot verify control at {self.connection.url}: "
                    f"{reason.verify_message} (is --ca control's ca.pem?)"
                ) from None
            raise ApiError(f"cannot reach control at {self.connection.url}: {reason}") from None
        except (TimeoutError, ConnectionError) as e:
            raise ApiError(f"cannot reach control at {self.connection.url}: {e}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def get(self, path: str, **query: str) -> Any:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def _api_error(e: urllib.error.HTTPError) -> ApiError:
    try:
        body = json.loads(e.read())
        error = body["error"]
        message = str(error["message"])
        details = error.get("errors")
        if isinstance(details, list) and details:
            shown = "; ".join(
                f"{d.get('path')}: {d.get('message')}" if d.get("path") else str(d.get("message"))
                for d in details[:10]
            )
            if shown not in message:
                message = f"{message} ({shown})"
        return ApiError(message.replace("\n", "; "), e.code, str(error.get("code", "")))
    except (ValueError, KeyError, TypeError):
        return ApiError(f"control answered HTTP {e.code} {e.reason}", e.code)


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")
