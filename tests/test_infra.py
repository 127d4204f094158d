"""infra/: the templates lint and scan clean, deploy, and create what the engine expects.

Both templates are deployed to a moto server of this process over HTTP on
loopback (never to ``FLOWY_TEST_ENDPOINT``: tests must not create stacks on
real AWS, and ministack has no CloudFormation); names come from AWSSettings, as
in the engine.  moto 5.2.5 creates every resource but drops some properties:
the table's point-in-time recovery and KMS key, the bucket's versioning,
public access block, lifecycle, ownership controls and policy, the queues'
policies, and the roles' ManagedPolicyArns.  Those are checked in the template
(test_what_moto_drops_is_in_the_template), by cfn-lint and by checkov.
tests/test_infra_policies.py checks what the policies allow.
"""

from __future__ import annotations

import json
import os
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

from flowy.backends.aws import settings as naming
from flowy.backends.aws.settings import AWSSettings
from flowy.backends.aws.store import RUN_INDEX, WAKE_INDEX
from tests.infra_support import ACCOUNT, INFRA, as_list, policy_statements

MAX_RECEIVES = 101  # the templates' default MaxReceives
# checkov in a virtualenv of its own (.ci/run makes one): its executable.
CHECKOV_VARIABLE = "FLOWY_CHECKOV"
POLICY_ACTIONS = {  # least privilege: exactly these, on the namespace's resources only
    "decider": "dynamodb:GetItem PutItem UpdateItem DeleteItem Query BatchWriteItem BatchGetItem "
               "sqs:ReceiveMessage DeleteMessage ChangeMessageVisibility SendMessage GetQueueUrl "
               "s3:GetObject PutObject",
    "worker": "dynamodb:PutItem UpdateItem GetItem BatchGetItem "
              "sqs:ReceiveMessage DeleteMessage ChangeMessageVisibility GetQueueUrl SendMessage "
              "s3:GetObject PutObject",
    "client": "dynamodb:PutItem GetItem Query Scan sqs:SendMessage GetQueueUrl "
              "s3:GetObject PutObject",
    "operator": "dynamodb:Query Scan DeleteItem BatchWriteItem sqs:ReceiveMessage DeleteMessage "
                "GetQueueAttributes GetQueueUrl SendMessage s3:GetObject PutObject",
}
POLICY_DENIALS = {  # what a wildcard on task queues would give too much of
    "decider": "sqs:SendMessage", "worker": "sqs:ReceiveMessage DeleteMessage "
    "ChangeMessageVisibility", "client": "", "operator": "sqs:SendMessage"}


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
    # 0: no errors, no warnings, and no informational findings either (I3011,
    # a queue without DeletionPolicy, is one).
    done = subprocess.run([cfn_lint, str(INFRA / template), "--include-checks", "I"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_finds_nothing_unexplained() -> None:
    checkov = os.environ.get(CHECKOV_VARIABLE)
    if not checkov:
        pytest.skip(f"set {CHECKOV_VARIABLE} to a checkov executable installed apart from the "
                    "project (python3 -m venv /tmp/checkov && /tmp/checkov/bin/pip install "
                    "checkov; .ci/run does)")
    done = subprocess.run([checkov, "-d", str(INFRA), "--framework", "cloudformation",
                           "--skip-download", "--output", "json"],
                          capture_output=True, text=True, timeout=300)
    report = json.loads(done.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert (summary["failed"], summary["parsing_errors"], failed) == (0, 0, []), done.stderr
    # Every skip says why, in the template; and every resource was looked at
    # (checkov silently passes over a policy it can't read).
    assert all(c["check_result"].get("suppress_comment") for c in
               report["results"]["skipped_checks"])
    scanned = {c["resource"] for kind in ("passed_checks", "skipped_checks")
               for c in report["results"][kind]}
    for template in ("flowy.yaml", "task-list.yaml"):
        for name, spec in cfn_yaml.load(str(INFRA / template))["Resources"].items():
            if spec["Type"] in {"AWS::IAM::ManagedPolicy", "AWS::IAM::Role", "AWS::SQS::Queue",
                                "AWS::S3::Bucket", "AWS::DynamoDB::Table"}:
                assert f"{spec['Type']}.{name}" in scanned, (template, name)


def test_the_templates_name_things_as_the_engine() -> None:
    for template in ("flowy.yaml", "task-list.yaml"):
        parameters = cfn_yaml.load(str(INFRA / template))["Parameters"]
        assert parameters["Namespace"]["AllowedPattern"] == naming.NAMESPACE_PATTERN
        assert parameters["Namespace"]["MaxLength"] == naming.NAMESPACE_MAX
        assert parameters["TaskList"]["AllowedPattern"] == naming.TASK_LIST_PATTERN


def test_table_and_its_index(deployed: Deployed) -> None:
    dynamodb = _client("dynamodb", deployed.endpoint)
    table = dynamodb.describe_table(TableName=deployed.settings.table)["Table"]
    assert deployed.outputs["TableName"] == table["TableName"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["DeletionProtectionEnabled"] is True
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


def _statements(iam: Any, arn: str) -> list[dict[str, Any]]:
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    return iam.get_policy_version(PolicyArn=arn, VersionId=version)[  # type: ignore[no-any-return]
        "PolicyVersion"]["Document"]["Statement"]


def test_roles_and_least_privilege_policies(deployed: Deployed) -> None:
    iam, prefix = _client("iam", deployed.endpoint), deployed.settings.prefix
    for role in ("Decider", "Worker"):
        found = iam.get_role(RoleName=f"{prefix}-{role.lower()}")["Role"]
        assert found["Arn"] == deployed.outputs[f"{role}RoleArn"]
        ec2, ecs = found["AssumeRolePolicyDocument"]["Statement"]
        assert (ec2["Principal"], "Condition" in ec2) == ({"Service": "ec2.amazonaws.com"}, False)
        assert ecs["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert ecs["Condition"] == {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
            "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:us-east-1:{ACCOUNT}:*"}}
    resolved = policy_statements("flowy.yaml", Namespace=deployed.settings.namespace)
    for policy, spec in POLICY_ACTIONS.items():
        arn = deployed.outputs[f"{policy.title()}PolicyArn"]
        assert arn == f"arn:aws:iam::{ACCOUNT}:policy/{prefix}-{policy}"
        statements = _statements(iam, arn)
        # What tests/test_infra_policies.py reads from the template is what was deployed.
        assert statements == resolved[f"{prefix}-{policy}"], policy

        for effect, expected in (("Allow", spec), ("Deny", POLICY_DENIALS[policy])):
            actions = {a for s in statements if s["Effect"] == effect
                       for a in as_list(s["Action"])}
            assert actions == _actions(expected), (policy, effect)
        resources = [r for s in statements for r in as_list(s["Resource"])]
        assert all(f":{prefix}" in r or f"/{prefix}" in r for r in resources), resources


def test_task_list_stack(deployed: Deployed) -> None:
    settings = deployed.settings
    outputs = _deploy(deployed.endpoint, f"{settings.prefix}-tasks-images", "task-list.yaml",
                      Namespace=settings.namespace, TaskList="images")
    path = _check_queue(_client("sqs", deployed.endpoint), settings.task_queue("images"))
    assert urlparse(outputs["TaskQueueUrl"]).path == path
    exports = _client("cloudformation", deployed.endpoint).list_exports()["Exports"]
    assert {e["Name"]: e["Value"] for e in exports}[
        f"{settings.prefix}--tasks-images-arn"] == (
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:{settings.task_queue('images')}")


def test_with_a_kms_key(deployed: Deployed) -> None:
    key = _client("kms", deployed.endpoint).create_key()["KeyMetadata"]["Arn"]
    settings = AWSSettings(namespace="k" + uuid.uuid4().hex[:10])
    outputs = _deploy(deployed.endpoint, settings.prefix, "flowy.yaml",
                      Namespace=settings.namespace, KmsKeyArn=key)
    extra = _deploy(deployed.endpoint, f"{settings.prefix}-tasks-images", "task-list.yaml",
                    Namespace=settings.namespace, TaskList="images", KmsKeyArn=key)
    sqs = _client("sqs", deployed.endpoint)
    for url in [v for k, v in {**outputs, **extra}.items() if k.endswith("QueueUrl")]:
        path = urlparse(url).path  # moto's outputs name the real AWS host
        attributes = sqs.get_queue_attributes(QueueUrl=deployed.endpoint + path,
                                              AttributeNames=["KmsMasterKeyId"])["Attributes"]
        assert attributes["KmsMasterKeyId"] == key, url
    encryption = _client("s3", deployed.endpoint).get_bucket_encryption(
        Bucket=outputs["PayloadBucket"])["ServerSideEncryptionConfiguration"]["Rules"]
    assert [r["ApplyServerSideEncryptionByDefault"] for r in encryption] == [
        {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}]
    [statement] = _statements(_client("iam", deployed.endpoint), outputs["KeyPolicyArn"])
    assert (statement["Action"], statement["Resource"]) == (
        ["kms:Decrypt", "kms:GenerateDataKey"], key)
    assert statement["Condition"]["StringEquals"]["kms:ViaService"] == [
        f"{service}.us-east-1.amazonaws.com" for service in ("dynamodb", "sqs", "s3")]
    assert "KeyPolicyArn" not in deployed.outputs  # only with a key


def _tls_only(statements: list[dict[str, Any]], service: str) -> list[str]:
    """The resources that a statement of ``statements`` closes to plain HTTP."""
    return [r for s in statements if s == {**s, "Effect": "Deny", "Principal": "*",
                                           "Action": f"{service}:*", "Condition": {
                                               "Bool": {"aws:SecureTransport": "false"}}}
            for r in as_list(s["Resource"])]


def test_what_moto_drops_is_in_the_template() -> None:
    resources = cfn_yaml.load(str(INFRA / "flowy.yaml"))["Resources"]
    table = resources["Table"]["Properties"]
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"]["Fn::If"][:2] == ["UseKms", {
        "SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Ref": "KmsKeyArn"}}]
    bucket = resources["Payloads"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True)
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    expire, markers = bucket["LifecycleConfiguration"]["Rules"]
    assert (expire["Status"], expire["ExpirationInDays"]) == (
        "Enabled", {"Ref": "PayloadExpiryDays"})
    assert expire["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": {"Ref": "OverwrittenPayloadDays"}}
    assert (markers["Status"], markers["ExpiredObjectDeleteMarker"]) == ("Enabled", True)
    for rule in (expire, markers):
        assert "Prefix" not in rule and "Filter" not in rule  # every object expires
    payloads = [{"Fn::GetAtt": ["Payloads", "Arn"]}, {"Fn::Sub": "${Payloads.Arn}/*"}]
    policy = resources["PayloadsTlsOnly"]["Properties"]
    assert policy["Bucket"] == {"Ref": "Payloads"}
    assert _tls_only(policy["PolicyDocument"]["Statement"], "s3") == payloads
    for role in ("Decider", "Worker"):
        policies = resources[f"{role}Role"]["Properties"]["ManagedPolicyArns"]
        assert policies == {"Fn::If": ["UseKms", [{"Ref": f"{role}Policy"}, {"Ref": "KeyPolicy"}],
                                       [{"Ref": f"{role}Policy"}]]}
    for template in ("flowy.yaml", "task-list.yaml"):
        resources = cfn_yaml.load(str(INFRA / template))["Resources"]
        queues = [name for name, spec in resources.items() if spec["Type"] == "AWS::SQS::Queue"]
        [policy] = [spec["Properties"] for spec in resources.values()
                    if spec["Type"] == "AWS::SQS::QueuePolicy"]
        assert sorted(ref["Ref"] for ref in policy["Queues"]) == sorted(queues), template
        closed = _tls_only(policy["PolicyDocument"]["Statement"], "sqs")
        assert sorted(arn["Fn::GetAtt"][0] for arn in closed) == sorted(queues), template
        assert all(resources[name].get("DeletionPolicy") == resources[name].get(
            "UpdateReplacePolicy") == "Retain" for name in queues), template
