import random
from pathlib import Path

import pytest

from kindling.control.aliases import AliasService
from kindling.control.codestore import CodeStore
from kindling.control.functions import FunctionService
from kindling.control.models import FunctionRef
from kindling.control.store import FunctionStore
from kindling.control.versions import VersionService
from kindling.errors import ConflictError, ValidationError
from kindling.runtimes.catalog import RuntimeCatalog
from kindling.store import Store
from tests.control.test_codestore import make_zip
from tests.control.test_functions import ACCOUNT, REGION, _params, run

REF = FunctionRef(ACCOUNT, REGION, "f")


@pytest.fixture
def services(
    tmp_path: Path, store_url: str
) -> tuple[FunctionService, VersionService, AliasService]:
    store = FunctionStore(Store(store_url))
    functions = FunctionService(store, CodeStore(tmp_path / "code"), RuntimeCatalog())
    run(functions.create(ACCOUNT, REGION, REF, _params()))
    functions.recover()
    versions = VersionService(functions, store)
    versions.publish(REF)
    run(functions.update_code(REF, {"ZipFile": make_zip({"bootstrap": (b"#!/bin/sh\n#2", 0o755)})}))
    functions.recover()
    versions.publish(REF)
    return functions, versions, AliasService(functions, store, random.Random(7))


def test_route_follows_the_weights(
    services: tuple[FunctionService, VersionService, AliasService],
) -> None:
    _functions, _versions, aliases = services
    aliases.create(
        REF,
        {
            "Name": "a",
            "FunctionVersion": "1",
            "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1}},
        },
    )
    draws = [aliases.route(REF, "a") for _ in range(20_000)]
    share = draws.count("2") / len(draws)
    assert 0.09 < share < 0.11


def test_alias_rules(services: tuple[FunctionService, VersionService, AliasService]) -> None:
    functions, versions, aliases = services
    with pytest.raises(ValidationError):
        aliases.create(REF, {"Name": "123", "FunctionVersion": "1"})
    with pytest.raises(ValidationError):
        aliases.create(
            REF,
            {
                "Name": "b",
                "FunctionVersion": "1",
                "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}},
            },
        )
    aliases.create(REF, {"Name": "b", "FunctionVersion": "2"})
    assert functions.get(FunctionRef(ACCOUNT, REGION, "f", "b")).version == "2"
    with pytest.raises(ConflictError):
        versions.delete(FunctionRef(ACCOUNT, REGION, "f", "2"))
