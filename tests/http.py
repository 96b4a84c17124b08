"""Reading a page a process serves on loopback, for the tests of /metrics and /healthz."""

import urllib.error
import urllib.request


def get(port: int, path: str) -> tuple[int, str]:
    """Status and body of ``http://127.0.0.1:port/path`` (an error status too)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
