"""The function operations in process, from wire input to wire output: SnapStart comes in
through the model's input shape and goes out in every FunctionConfiguration the model
declares, valid against botocore's output shapes."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.validate import ParamValidator

from kindling.api.errors import ErrorMapper
from kindling.api.functions import FunctionsApi
from kindling.api.internal import CodeUrls
from kindling.api.model import load_service_model
from kindling.api.wire import parse_input, serialize_output
from kindling.control.codestore import CodeStore
from kindling.control.concurrency import ConcurrencySettings
from kindling.control.functions import FunctionService
from kindling.control.runtimeversions import RuntimeVersions
from kindling.control.store import FunctionStore, ProvisionedStore
from kindling.control.versions import VersionService
from kindling.errors import ConstraintError, SnapStartNotReadyError
from kindling.iam.sigv4 import Caller
from kindling.store import Store
from tests.control.test_snapstart import AnyPython, _params

MODEL = load_service_model()
CALLER = Caller("000000000000", "test", "us-east-1")


class Wire:
    """Calls FunctionsApi the way the front end does: parse, call, serialize."""

    def __init__(self, root: Path) -> None:
        engine = Store(f"sqlite:///{root / 'db.sqlite'}")
        store = FunctionStore(engine)
        self.functions = FunctionService(store, CodeStore(root / "code"), AnyPython())
        versions = VersionService(self.functions, store)
        urls = CodeUrls(b"secret", "http://127.0.0.1:9000", self.functions)
        concurrency = ConcurrencySettings(self.functions, store, 1000, ProvisionedStore(engine))
        runtime_versions = RuntimeVersions(self.functions, AnyPython())
        self.operations = FunctionsApi(
            self.functions, versions, concurrency, urls, runtime_versions
        ).operations()

    def call(self, name: str, path: dict[str, str], body: dict[str, Any] | None = None) -> Any:
        operation = MODEL.operation_model(name)
        raw = json.dumps(body).encode() if body is not None else b""
        params = parse_input(operation, path, {}, {}, raw)
        result = asyncio.run(self.operations[name](CALLER, params))
        _status, _headers, out = serialize_output(operation, result)
        document = json.loads(out)
        report = ParamValidator().validate(document, operation.output_shape)
        assert not report.has_errors(), report.generate_report()
        self.functions.recover()  # what the loop would settle shortly after
        return document


def _create_body(**extra: Any) -> dict[str, Any]:
    params = _params(**extra)
    zipped = base64.b64encode(params["Code"]["ZipFile"]).decode()
    return {**params, "FunctionName": "f", "Code": {"ZipFile": zipped}}


def test_snapstart_round_trips_through_every_function_configuration(tmp_path: Path) -> None:
    wire = Wire(tmp_path)
    on = {"ApplyOn": "PublishedVersions"}
    created = wire.call("CreateFunction", {}, _create_body(SnapStart=on))
    assert created["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    f = {"FunctionName": "f"}
    assert wire.call("GetFunctionConfiguration", f)["SnapStart"]["ApplyOn"] == "PublishedVersions"
    assert wire.call("GetFunction", f)["Configuration"]["SnapStart"] == created["SnapStart"]
    listed = wire.call("ListFunctions", {})["Functions"]
    assert [c["SnapStart"]["ApplyOn"] for c in listed] == ["PublishedVersions"]

    published = wire.call("PublishVersion", f, {})
    assert published["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    assert published["State"] == "Pending"
    updated = wire.call("UpdateFunctionConfiguration", f, {"SnapStart": {"ApplyOn": "None"}})
    assert updated["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    versions = wire.call("ListVersionsByFunction", f)["Versions"]
    assert [(v["Version"], v["SnapStart"]["OptimizationStatus"]) for v in versions] == [
        ("$LATEST", "Off"),
        ("1", "On"),
    ]


def test_an_unknown_apply_on_is_a_validation_exception() -> None:
    operation = MODEL.operation_model("UpdateFunctionConfiguration")
    body = json.dumps({"SnapStart": {"ApplyOn": "Always"}}).encode()
    with pytest.raises(ConstraintError) as info:
        parse_input(operation, {"FunctionName": "f"}, {}, {}, body)
    assert info.value.message == (
        "1 validation error detected: Value 'Always' at 'snapStart.applyOn' failed to satisfy "
        "constraint: Member must satisfy enum value set: [PublishedVersions, None]"
    )


def test_snapstart_not_ready_is_its_own_409() -> None:
    mapper = ErrorMapper(MODEL)
    assert mapper.code_for(SnapStartNotReadyError("x")) == ("SnapStartNotReadyException", 409)
    body = json.loads(mapper.render(SnapStartNotReadyError("not yet"), "rid").body)
    assert body == {"Type": "User", "Message": "not yet"}
