"""Serve a folder on 127.0.0.1 with `python -m http.server`, stopped reliably when the block ends.

Example:
    >>> import tempfile, urllib.request
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp()); _ = (folder / "hello.txt").write_text("hi")
    >>> with serve_folder(folder) as base_url:
    ...     urllib.request.urlopen(base_url + "hello.txt").read()
    b'hi'
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from dataio.errors import DataError

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
PORT_ATTEMPTS = 3
# urllib without proxies: a proxy set in the environment must not see requests meant for 127.0.0.1.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@contextlib.contextmanager
def serve_folder(folder: Path, log_path: Path | None = None) -> Iterator[str]:
    """Yield the base url ("http://127.0.0.1:PORT/") of an HTTP server for `folder`.

    The server runs as a subprocess on a free port; it is stopped on exit from the block, also after an
    exception or KeyboardInterrupt. Its request log goes to `log_path` (discarded when None).
    """
    log = open(log_path, "wb") if log_path is not None else subprocess.DEVNULL
    server = None
    try:
        for _attempt in range(PORT_ATTEMPTS):
            port = _free_port()
            server = subprocess.Popen(
                [sys.executable, "-m", "http.server", "--bind", HOST, "--directory", str(folder), str(port)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
            base_url = f"http://{HOST}:{port}/"
            if _wait_until_serving(server, base_url):
                break
            _stop(server)  # another program took the port between our check and the server's bind
            server = None
        if server is None:
            raise DataError(f"could not start a local HTTP server for {folder} (see {log_path or 'no log'})")
        yield base_url
    finally:
        if server is not None:
            _stop(server)
        if log is not subprocess.DEVNULL:
            log.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _wait_until_serving(server: subprocess.Popen, base_url: str) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            with _DIRECT.open(base_url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.1)
    return False


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextlib.contextmanager
def no_proxy_for_localhost() -> Iterator[None]:
    """Add 127.0.0.1 to no_proxy/NO_PROXY for the block (img2dataset's processes inherit it)."""
    saved = {name: os.environ.get(name) for name in ("no_proxy", "NO_PROXY")}
    for name, value in saved.items():
        os.environ[name] = ",".join(v for v in (value, HOST, "localhost") if v)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
