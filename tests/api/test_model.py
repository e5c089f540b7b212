import pytest

from kindling.api.model import Router, load_service_model
from kindling.errors import UnknownOperationError

MODEL = load_service_model()
ROUTER = Router(MODEL)


@pytest.mark.parametrize(
    ("method", "path", "query", "operation", "params"),
    [
        ("POST", "/2015-03-31/functions", {}, "CreateFunction", {}),
        ("GET", "/2015-03-31/functions/", {}, "ListFunctions", {}),
        ("GET", "/2015-03-31/functions/f1", {}, "GetFunction", {"FunctionName": "f1"}),
        (
            "POST",
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af/invocations",
            {},
            "Invoke",
            {"FunctionName": "arn:aws:lambda:us-east-1:000000000000:function:f"},
        ),
        ("GET", "/2015-03-31/functions/f1/configuration", {}, "GetFunctionConfiguration", {}),
        ("PUT", "/2015-03-31/functions/f1/code", {}, "UpdateFunctionCode", {}),
        ("GET", "/2016-08-19/account-settings/", {}, "GetAccountSettings", {}),
        (
            "GET",
            "/2019-09-30/functions/f1/provisioned-concurrency",
            {"List": ["ALL"]},
            "ListProvisionedConcurrencyConfigs",
            {},
        ),
    ],
)
def test_routes_match_the_model(
    method: str, path: str, query: dict[str, list[str]], operation: str, params: dict[str, str]
) -> None:
    name, found = ROUTER.match(method, path, query)
    assert name == operation
    for key, value in params.items():
        assert found[key] == value


def test_unknown_path_is_an_unknown_operation() -> None:
    with pytest.raises(UnknownOperationError):
        ROUTER.match("GET", "/nope", {})
