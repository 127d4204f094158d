"""infra/: the templates lint clean, deploy, and name what the engine expects."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from flowy.aws import AWSSettings
from flowy.aws.emulator import LocalAWS
from tests.aws_support import new_namespace

INFRA = Path(__file__).resolve().parent.parent / "infra"
TEMPLATES = ["flowy.yaml", "task-list.yaml"]


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_lints_clean(template: str) -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"  # installed with the dev extra
    done = subprocess.run([str(cfn_lint), str(INFRA / template)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _deploy(endpoint: str, template: str, **parameters: str) -> None:
    cloudformation = _client("cloudformation", endpoint)
    name = f"flowy-{parameters['Namespace']}-{template.partition('.')[0]}"
    cloudformation.create_stack(
        StackName=name, TemplateBody=(INFRA / template).read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"])
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """Always moto, whatever FLOWY_TEST_ENDPOINT says: it deploys CloudFormation
    (ministack doesn't, and the tests must not create stacks on real AWS)."""
    with LocalAWS() as server:
        yield server.endpoint_url


def test_stack_creates_the_resources_the_engine_uses(moto_endpoint: str) -> None:
    aws_endpoint = moto_endpoint
    namespace = new_namespace()
    _deploy(aws_endpoint, "flowy.yaml", Namespace=namespace)
    _deploy(aws_endpoint, "task-list.yaml", Namespace=namespace, TaskList="images")
    settings = AWSSettings(namespace=namespace)
    sqs, dynamodb = _client("sqs", aws_endpoint), _client("dynamodb", aws_endpoint)
    table = dynamodb.describe_table(TableName=settings.table)["Table"]
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["runs_by_workflow"]
    for queue in (settings.decision_queue, settings.timer_queue, settings.task_queue("default"),
                  settings.task_queue("images")):
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        redrive = json.loads(sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"].endswith(":" + settings.dead_letter_queue(queue))
        assert int(redrive["maxReceiveCount"]) == settings.max_receives + 1
    iam = _client("iam", aws_endpoint)
    roles = {r["RoleName"] for r in iam.list_roles()["Roles"]}
    assert {f"flowy-{namespace}-decider", f"flowy-{namespace}-worker"} <= roles
