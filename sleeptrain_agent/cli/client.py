"""The CLI's thin client of a running daemon: where it listens, its token, its errors as `DaemonError`.

Commands that talk to the daemon of their state directory (`chat`, `sleep`,
`adapters activate`, `daemon status`) go through `DaemonClient.of(app)`; the
error message of a refused request is the daemon's own (OpenAI's error shape).
"""

from __future__ import annotations

from typing import Any

import httpx

from sleeptrain_agent.daemon import read_daemon_file
from sleeptrain_agent.errors import DaemonError


def daemon_url(info: dict) -> str:
    """The URL to reach a daemon recorded in `daemon.json` (a wildcard bind is reached on loopback)."""
    host = info["host"]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{info['port']}"


def error_message(response: httpx.Response) -> str:
    """The message of an error response in OpenAI's shape, else the status line."""
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:200]}".rstrip(": ")


class DaemonClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 60):
        self.url = url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    @classmethod
    def of(cls, app, timeout: float = 60) -> DaemonClient | None:
        """The client of the daemon running for `app`'s state directory, or None when none runs."""
        info = read_daemon_file(app.state_dir)
        if info is None:
            return None
        token = app.settings.serve.token
        return cls(daemon_url(info), token.get_secret_value() if token else None, timeout)

    def request(self, method: str, path: str, **kwargs) -> Any:
        """The JSON answer of a request; `DaemonError` with the daemon's message when it refuses."""
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise DaemonError(f"cannot reach the daemon at {self.url}: {e}") from None
        if r.status_code >= 400:
            raise DaemonError(error_message(r))
        return r.json()

    def get(self, path: str, **kwargs) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> Any:
        return self.request("POST", path, **kwargs)

    def health(self) -> dict:
        """`/health`, or `{"status": "unreachable", "error": ...}`; never raises."""
        try:
            return self.http.get("/health", timeout=5).json()
        except (httpx.HTTPError, ValueError) as e:
            return {"status": "unreachable", "error": str(e)}

    def close(self) -> None:
        self.http.close()
