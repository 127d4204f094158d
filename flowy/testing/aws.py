"""A real AWS API for tests that need its semantics: a moto server, or the endpoint CI names.

The in-memory backend keeps the promises of SQS and DynamoDB that the engine
relies on, and is what most tests want.  A test of something only AWS can
tell (IAM, payloads in S3, the AWS backend itself) needs an endpoint:
:func:`aws_endpoint` gives the one ``FLOWY_TEST_ENDPOINT`` names (a moto
server that CI started, ministack, or real AWS over ``https://``), or else
starts a :class:`~flowy.backends.aws.emulator.LocalAWS` (a moto server in a
thread of this process, on loopback) for as long as it is used.  Both need
the ``dev`` extra (moto) or at least the ``aws`` one (boto3); nothing here
imports them before they are used, so ``import flowy.testing`` works without.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

ENDPOINT_VARIABLE = "FLOWY_TEST_ENDPOINT"


@contextmanager
def aws_endpoint(variable: str = ENDPOINT_VARIABLE) -> Iterator[str]:
    """The URL of an AWS endpoint to test against, while the ``with`` block lasts:
    ``$FLOWY_TEST_ENDPOINT`` if set, else a moto server started here and
    stopped at the end.  Point clients at it with
    ``flowy.backends.aws.emulator.emulator_environment(url)`` (the variables
    boto3 reads) or ``AWSSettings(endpoint_url=url, namespace=...)``."""
    endpoint = os.environ.get(variable)
    if endpoint:
        yield endpoint
        return
    from ..backends.aws.emulator import LocalAWS

    with LocalAWS() as server:
        yield server.endpoint_url
