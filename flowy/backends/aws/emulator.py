"""The embedded local AWS: a moto server on loopback, for ``flowy dev``, demos and tests.

moto (the ``dev`` extra) serves SQS, DynamoDB and S3 over HTTP; clients
reach it through ``AWS_ENDPOINT_URL`` like any other endpoint, so the engine
runs unchanged.  Its memory grows with the data it holds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
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
    """A moto server in a thread of this process, on 127.0.0.1 (a free port by default).

    The socket is bound here, in :meth:`start`, and handed to the server: moto's
    ``ThreadedMotoServer`` binds in its thread, and waits for ever when the
    port is taken; werkzeug, binding, prints two lines and exits the process.
    """

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.endpoint_url = ""

    def start(self) -> str:
        try:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server
        except ImportError:
            raise ConfigurationError("the embedded local AWS needs moto: "
                                     "pip install 'flowy[dev]'") from None
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
        try:
            listening = socket.create_server(("127.0.0.1", self._port))
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)  # without the address again
            raise ConfigurationError(
                f"the local AWS can't listen on 127.0.0.1 port {self._port} ({why}): "
                "stop what uses that port, or choose another (flowy dev --port)") from None
        with listening:  # the server listens on a duplicate of it
            self._server = make_server("127.0.0.1", self._port,
                                       DomainDispatcherApplication(create_backend_app),
                                       threaded=True, request_handler=MotoRequestHandler,
                                       fd=listening.fileno())
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="flowy-local-aws", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]  # the port the OS chose for port 0
        self.endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> LocalAWS:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
