"""infra/*.yaml read as CloudFormation would, and IAM's verdict on DynamoDB requests.

:func:`resolve` evaluates a template for given parameters: enough of ``Ref``,
``Fn::Sub``, ``Fn::GetAtt`` (``Arn``), ``Fn::If``, ``Fn::Equals`` and
``Fn::Not`` for the resources and policies of ``infra/`` (tests/test_infra.py
checks it against what a moto deployment makes of the same template).
:func:`allowed` is IAM's evaluation of one request against policy statements,
for the condition operators those policies use; any other operator raises,
so that an unknown condition never passes unnoticed.  :func:`requests` turns
the DynamoDB calls a client made into the requests IAM authorizes, with the
condition keys DynamoDB gives them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, NamedTuple

from cfnlint.decode import cfn_yaml

INFRA = Path(__file__).resolve().parent.parent / "infra"
ACCOUNT = "123456789012"  # moto's
REGION = "us-east-1"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
_NO_VALUE = object()


def load(template: str) -> dict[str, Any]:
    return dict(cfn_yaml.load(str(INFRA / template)))


def resolve(template: str, **parameters: str) -> dict[str, dict[str, Any]]:
    """The template's resources whose condition holds, as ``{logical id: Properties}``
    with every intrinsic function evaluated."""
    body = load(template)
    values = {name: str(spec.get("Default", "")) for name, spec in body["Parameters"].items()}
    values.update(parameters)
    return _Resolver(body, {**values, **PSEUDO}).resources()


class _Resolver:
    def __init__(self, body: dict[str, Any], values: dict[str, str]) -> None:
        self.resources_json = body["Resources"]
        self.conditions = body.get("Conditions", {})
        self.values = values

    def resources(self) -> dict[str, dict[str, Any]]:
        return {name: self.value(spec.get("Properties", {}))
                for name, spec in self.resources_json.items()
                if "Condition" not in spec or self.condition(spec["Condition"])}

    def condition(self, name: str) -> bool:
        return bool(self.value(self.conditions[name]))

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            [(key, argument)] = node.items()
            if key == "Ref":
                return _NO_VALUE if argument == "AWS::NoValue" else self.ref(argument)
            if key == "Fn::Sub":
                return self.sub(argument)
            if key == "Fn::GetAtt":
                name, attribute = argument if isinstance(argument, list) else argument.split(".")
                return self.attribute(name, attribute)
            if key == "Fn::If":
                condition, then, otherwise = argument
                return self.value(then if self.condition(condition) else otherwise)
            if key == "Fn::Equals":
                left, right = (self.value(a) for a in argument)
                return left == right
            if key == "Fn::Not":
                return not self.value(argument[0])
            if key.startswith("Fn::"):
                raise NotImplementedError(key)
        return {k: v for k, v in ((k, self.value(v)) for k, v in node.items())
                if v is not _NO_VALUE}

    def ref(self, name: str) -> str:
        if name in self.values:
            return self.values[name]
        return f"ref:{name}"  # a resource's physical id: not needed by the tests

    def sub(self, argument: Any) -> str:
        text, local = (argument, {}) if isinstance(argument, str) else argument
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return str(self.value(local[name]))
            if "." in name:
                return self.attribute(*name.split(".", 1))
            return self.ref(name)
        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def attribute(self, name: str, attribute: str) -> str:
        if attribute != "Arn":
            raise NotImplementedError(f"{name}.{attribute}")
        spec = self.resources_json[name]
        properties = spec["Properties"]
        kind = spec["Type"]
        if kind == "AWS::DynamoDB::Table":
            table = self.value(properties["TableName"])
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
        if kind == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.value(properties['QueueName'])}"
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{self.value(properties['BucketName'])}"
        raise NotImplementedError(kind)


def policy_statements(template: str, **parameters: str) -> dict[str, list[dict[str, Any]]]:
    """``{policy name: statements}`` of the template's managed policies."""
    return {properties["ManagedPolicyName"]: properties["PolicyDocument"]["Statement"]
            for properties in (spec for name, spec in resolve(template, **parameters).items()
                               if name.endswith("Policy") and "ManagedPolicyName" in spec)}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- IAM's evaluation, for the operators the policies use -----------------------------


class Request(NamedTuple):
    action: str
    resource: str
    context: Mapping[str, list[str]]  # condition key: values (absent: not in the request)


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, list[str]]
                     ) -> bool:
    wanted = [str(v).lower() if isinstance(v, bool) else str(v) for v in as_list(expected)]
    present = key in context
    values = context.get(key, [])
    if operator == "ForAllValues:StringEquals":
        return all(v in wanted for v in values)  # holds for none, as in IAM
    if operator == "Null":  # "false": the key must be in the request
        return present == (wanted == ["false"])
    if operator == "StringEqualsIfExists":
        return not present or all(v in wanted for v in values)
    if operator == "StringEquals":
        return present and all(v in wanted for v in values)
    raise NotImplementedError(f"condition operator {operator}")


def _matches(statement: Mapping[str, Any], request: Request) -> bool:
    if not any(fnmatchcase(request.action, a) for a in as_list(statement["Action"])):
        return False
    if not any(fnmatchcase(request.resource, r) for r in as_list(statement["Resource"])):
        return False
    return all(_condition_holds(operator, key, expected, request.context)
               for operator, keys in statement.get("Condition", {}).items()
               for key, expected in keys.items())


def allowed(statements: Iterable[Mapping[str, Any]], request: Request) -> bool:
    """An explicit Allow and no Deny: IAM's verdict for one identity's policies."""
    matching = [s["Effect"] for s in statements if _matches(s, request)]
    return "Allow" in matching and "Deny" not in matching


# -- the requests behind DynamoDB calls ------------------------------------------------

_WORD = re.compile(r"(?<![:\w#])#?[A-Za-z_]\w*")
_NOT_NAMES = {"SET", "REMOVE", "ADD", "DELETE", "AND", "OR", "NOT", "BETWEEN", "IN",
              "attribute_exists", "attribute_not_exists", "attribute_type", "begins_with",
              "contains", "size", "if_not_exists", "list_append"}
_EXPRESSIONS = ("UpdateExpression", "ConditionExpression", "ProjectionExpression",
                "KeyConditionExpression", "FilterExpression")
_READS = {"GetItem", "BatchGetItem", "Query", "Scan"}
_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


def _attributes(call: Mapping[str, Any]) -> set[str]:
    """Every attribute a request names: of its item or key, and in its expressions."""
    names = set(call.get("Item", {})) | set(call.get("Key", {}))
    aliases = call.get("ExpressionAttributeNames", {})
    for field in _EXPRESSIONS:
        for word in _WORD.findall(call.get(field, "")):
            if word not in _NOT_NAMES:
                names.add(aliases.get(word, word))
    return names


def _request(action: str, table_arn: str, call: Mapping[str, Any]) -> Request:
    context: dict[str, list[str]] = {}
    attributes = _attributes(call)
    if attributes:
        context["dynamodb:Attributes"] = sorted(attributes)
    if action in _READS:
        context["dynamodb:Select"] = [call.get("Select") or (
            "SPECIFIC_ATTRIBUTES" if "ProjectionExpression" in call else "ALL_ATTRIBUTES")]
    returned = call.get("ReturnValues") or call.get("ReturnValuesOnConditionCheckFailure")
    if action in _WRITES or returned:
        context["dynamodb:ReturnValues"] = [returned or "NONE"]
    index = call.get("IndexName")
    resource = f"{table_arn}/index/{index}" if index else table_arn
    return Request(f"dynamodb:{action}", resource, context)


def requests(operation: str, params: Mapping[str, Any], table_arn: str) -> list[Request]:
    """The requests IAM authorizes for one call (one per item of a batch or transaction)."""
    if operation == "BatchWriteItem":
        return [_request("BatchWriteItem", table_arn, entry.get("PutRequest") or
                         entry["DeleteRequest"])
                for entries in params["RequestItems"].values() for entry in entries]
    if operation == "BatchGetItem":
        return [_request("BatchGetItem", table_arn, {**spec, "Key": key})
                for spec in params["RequestItems"].values() for key in spec["Keys"]]
    if operation == "TransactWriteItems":
        actions = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                   "ConditionCheck": "ConditionCheckItem"}
        return [_request(actions[kind], table_arn, body)
                for item in params["TransactItems"] for kind, body in item.items()]
    return [_request(operation, table_arn, params)]
