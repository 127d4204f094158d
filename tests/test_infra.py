"""infra/: the templates lint clean, deploy, and create what the engine expects.

Both templates are deployed to a moto server of this process over HTTP on
loopback (never to ``FLOWY_TEST_ENDPOINT``: tests must not create stacks on
real AWS, and ministack has no CloudFormation); names come from AWSSettings, as
in the engine.  moto 5.2.5 creates every resource but drops some properties:
the table's point-in-time recovery, the bucket's public access block,
lifecycle and ownership controls, and the roles' ManagedPolicyArns.  Those are
checked in the template (test_what_moto_drops_is_in_the_template) and by cfn-lint.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import boto3
import pytest
from cfnlint.decode import cfn_yaml
from moto.server import ThreadedMotoServer

from flowy.backends.aws.settings import AWSSettings
from flowy.backends.aws.store import RUN_INDEX, WAKE_INDEX

INFRA = Path(__file__).resolve().parent.parent / "infra"
ACCOUNT = "123456789012"  # moto's
MAX_RECEIVES = 101  # the templates' default MaxReceives
POLICY_ACTIONS = {  # least privilege: exactly these, on the namespace's resources only
    "decider": "dynamodb:GetItem PutItem UpdateItem DeleteItem Query BatchWriteItem BatchGetItem "
               "sqs:ReceiveMessage DeleteMessage ChangeMessageVisibility SendMessage GetQueueUrl "
               "GetQueueAttributes s3:GetObject PutObject",
    "worker": "dynamodb:GetItem PutItem UpdateItem BatchGetItem sqs:ReceiveMessage DeleteMessage "
              "ChangeMessageVisibility SendMessage GetQueueUrl GetQueueAttributes "
              "s3:GetObject PutObject",
    "client": "dynamodb:GetItem PutItem Query UpdateItem Scan sqs:SendMessage GetQueueUrl "
              "s3:GetObject PutObject",
    "operator": "dynamodb:Query Scan DeleteItem BatchWriteItem sqs:ReceiveMessage DeleteMessage "
                "SendMessage GetQueueUrl GetQueueAttributes",
}


def _actions(spec: str) -> set[str]:
    """``"sqs:A B s3:C"`` -> ``{"sqs:A", "sqs:B", "s3:C"}``."""
    service, actions = "", set[str]()
    for word in spec.split():
        service, _, action = word.rpartition(":") if ":" in word else (service, "", word)
        actions.add(f"{service}:{action}")
    return actions


class Deployed(NamedTuple):
    endpoint: str
    settings: AWSSettings
    outputs: dict[str, str]


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _deploy(endpoint: str, stack: str, template: str, **parameters: str) -> dict[str, str]:
    cloudformation = _client("cloudformation", endpoint)
    cloudformation.create_stack(
        StackName=stack, TemplateBody=(INFRA / template).read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"])
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    outputs = cloudformation.describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    return {o["OutputKey"]: o["OutputValue"] for o in outputs}


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployed]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()  # the port the OS chose
        settings = AWSSettings(namespace="t" + uuid.uuid4().hex[:10])
        endpoint = f"http://{host}:{port}"
        outputs = _deploy(endpoint, settings.prefix, "flowy.yaml",
                          Namespace=settings.namespace, TaskList="default")
        yield Deployed(endpoint, settings, outputs)
    finally:
        server.stop()


def _check_queue(sqs: Any, name: str, *, fifo: bool = False) -> str:
    """``name`` and its dead-letter queue are as the engine expects; returns the URL's path."""
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    dlq_url = sqs.get_queue_url(QueueName=AWSSettings.dead_letter_queue(name))["QueueUrl"]
    dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
    for queue in (attributes, dlq):
        assert queue["MessageRetentionPeriod"] == "1209600"
        assert queue.get("FifoQueue", "false") == str(fifo).lower()
        assert queue.get("ContentBasedDeduplication", "false") == "false"
    assert (attributes["VisibilityTimeout"], attributes["ReceiveMessageWaitTimeSeconds"]) == (
        "60", "20")
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == MAX_RECEIVES
    return str(urlparse(url).path)  # moto's stack outputs name the real AWS host


@pytest.mark.parametrize("template", ["flowy.yaml", "task-list.yaml"])
def test_template_lints_clean(template: str) -> None:
    cfn_lint = (shutil.which("cfn-lint", path=str(Path(sys.executable).parent))
                or shutil.which("cfn-lint"))
    assert cfn_lint, "cfn-lint is missing: pip install -e '.[dev]'"
    done = subprocess.run([cfn_lint, str(INFRA / template)],  # 0: no errors and no warnings
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_table_and_its_index(deployed: Deployed) -> None:
    dynamodb = _client("dynamodb", deployed.endpoint)
    table = dynamodb.describe_table(TableName=deployed.settings.table)["Table"]
    assert deployed.outputs["TableName"] == table["TableName"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]} == {
        "pk": "S", "sk": "S", "workflow": "S", "started_at": "N", "wake": "S", "due": "N"}
    indexes = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}
    assert sorted(indexes) == sorted([RUN_INDEX, WAKE_INDEX]) == ["runs_by_workflow",
                                                                  "runs_to_wake"]
    assert indexes[RUN_INDEX]["Projection"]["ProjectionType"] == "ALL"
    assert indexes[WAKE_INDEX]["Projection"]["ProjectionType"] == "KEYS_ONLY"
    for keys, (hash_key, range_key) in (
            (table["KeySchema"], ("pk", "sk")),
            (indexes[RUN_INDEX]["KeySchema"], ("workflow", "started_at")),
            (indexes[WAKE_INDEX]["KeySchema"], ("wake", "due"))):
        assert [(k["AttributeName"], k["KeyType"]) for k in keys] == [
            (hash_key, "HASH"), (range_key, "RANGE")]


@pytest.mark.parametrize("queue", ["Decision", "Timer", "Task"])
def test_queue_and_its_dead_letter_queue(deployed: Deployed, queue: str) -> None:
    settings, sqs = deployed.settings, _client("sqs", deployed.endpoint)
    name = {"Decision": settings.decision_queue, "Timer": settings.timer_queue,
            "Task": settings.task_queue("default")}[queue]
    path = _check_queue(sqs, name, fifo=queue == "Decision")
    assert urlparse(deployed.outputs[f"{queue}QueueUrl"]).path == path
    assert settings.max_receives < MAX_RECEIVES  # setup redrives at max_receives + 1, too


def test_payload_bucket(deployed: Deployed) -> None:
    bucket = f"{deployed.settings.prefix}-payloads-{ACCOUNT}"  # FLOWY_BUCKET
    assert deployed.outputs["PayloadBucket"] == bucket
    encryption = _client("s3", deployed.endpoint).get_bucket_encryption(Bucket=bucket)
    [rule] = encryption["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_roles_and_least_privilege_policies(deployed: Deployed) -> None:
    iam, prefix = _client("iam", deployed.endpoint), deployed.settings.prefix
    for role in ("Decider", "Worker"):
        found = iam.get_role(RoleName=f"{prefix}-{role.lower()}")["Role"]
        assert found["Arn"] == deployed.outputs[f"{role}RoleArn"]
        [trust] = found["AssumeRolePolicyDocument"]["Statement"]
        assert sorted(trust["Principal"]["Service"]) == ["ec2.amazonaws.com",
                                                         "ecs-tasks.amazonaws.com"]
    for policy, spec in POLICY_ACTIONS.items():
        arn = deployed.outputs[f"{policy.title()}PolicyArn"]
        assert arn == f"arn:aws:iam::{ACCOUNT}:policy/{prefix}-{policy}"
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        statements = iam.get_policy_version(PolicyArn=arn, VersionId=version)[
            "PolicyVersion"]["Document"]["Statement"]
        listed = [([s["Action"]] if isinstance(s["Action"], str) else s["Action"],
                   [s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
                  for s in statements if s["Effect"] == "Allow"]
        assert len(listed) == len(statements)
        assert {a for actions, _ in listed for a in actions} == _actions(spec), policy
        resources = [r for _, rs in listed for r in rs]
        assert all(f":{prefix}" in r or f"/{prefix}" in r for r in resources), resources


def test_task_list_stack(deployed: Deployed) -> None:
    settings = deployed.settings
    outputs = _deploy(deployed.endpoint, f"{settings.prefix}-tasks-images", "task-list.yaml",
                      Namespace=settings.namespace, TaskList="images")
    path = _check_queue(_client("sqs", deployed.endpoint), settings.task_queue("images"))
    assert urlparse(outputs["TaskQueueUrl"]).path == path
    exports = _client("cloudformation", deployed.endpoint).list_exports()["Exports"]
    assert {e["Name"]: e["Value"] for e in exports}[f"{settings.prefix}-tasks-images-arn"] == (
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:{settings.task_queue('images')}")


def test_what_moto_drops_is_in_the_template() -> None:
    resources = cfn_yaml.load(str(INFRA / "flowy.yaml"))["Resources"]
    table = resources["Table"]["Properties"]
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    bucket = resources["Payloads"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True)
    [rule] = bucket["LifecycleConfiguration"]["Rules"]
    assert (rule["Status"], rule["ExpirationInDays"]) == ("Enabled", {"Ref": "PayloadExpiryDays"})
    assert "Prefix" not in rule and "Filter" not in rule  # every object expires
    for role in ("Decider", "Worker"):
        policies = resources[f"{role}Role"]["Properties"]["ManagedPolicyArns"]
        assert policies == [{"Ref": f"{role}Policy"}]
