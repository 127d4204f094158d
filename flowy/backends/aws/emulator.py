"""The embedded local AWS: a moto server on loopback, for ``flowy dev``, demos and tests.

moto (the ``dev`` extra) serves SQS, DynamoDB and S3 over HTTP; clients
reach it through ``AWS_ENDPOINT_URL`` like any other endpoint, so the engine
runs unchanged.  Its memory grows with the data it holds.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ...core.errors import ConfigurationError

EMULATOR_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}


def emulator_environment(endpoint_url: str) -> dict[str, str]:
    """Environment variables that point boto3 (and child processes) at an emulator."""
    env = {k: os.environ.get(k, v) for k, v in EMULATOR_CREDENTIALS.items()}
    env["AWS_ENDPOINT_URL"] = endpoint_url
    return env


class LocalAWS:
    """A moto server in a thread of this process, on 127.0.0.1 (a free port by default)."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: Any = None
        self.endpoint_url = ""

    def start(self) -> str:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise ConfigurationError("the embedded local AWS needs moto: "
                                     "pip install 'flowy[dev]'") from None
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port,
                                          verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()  # the port the OS chose for port 0
        self.endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> LocalAWS:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
