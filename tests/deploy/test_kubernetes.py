"""deploy/kubernetes/: the manifests parse and say what ADR 0023 decided: control nodes
unprivileged with stable names, a privileged worker per node advertising its pod IP to
every control node, secrets only by reference (the placeholders are the only literals,
and kindling refuses them), probes on paths that need no signature, grace periods above
kindling's drain."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kindling.iam import cluster
from kindling.limits import SHUTDOWN_GRACE_S
from kindling.worker.server import HEALTH_PATH
from tests.deploy.manifests import (
    container,
    documents,
    env_sources,
    files,
    find,
    flag,
    of_kind,
)

PLACEHOLDER = re.compile(r"REPLACE_WITH_[A-Z_]+")
SECRET_WORDS = ("SECRET", "STORE", "COUNTING", "PASSWORD", "TOKEN")


def _control() -> dict[str, Any]:
    return find("StatefulSet", "kindling-control")


def _worker() -> dict[str, Any]:
    return find("DaemonSet", "kindling-worker")


def _argv(spec: dict[str, Any]) -> list[str]:
    return [str(w) for w in spec.get("command", []) + spec.get("args", [])]


def _grace(argv: list[str]) -> float:
    return float(flag(argv, "--shutdown-grace")) if "--shutdown-grace" in argv else SHUTDOWN_GRACE_S


def test_every_manifest_parses_and_lands_in_the_namespace() -> None:
    assert files(), "no manifests"
    docs = documents()
    assert all({"apiVersion", "kind", "metadata"} <= set(d) for d in docs)
    first = [d for d in docs if d["kind"] == "Namespace"]
    assert docs[0]["kind"] == "Namespace" and len(first) == 1  # applied before the rest
    namespace = first[0]["metadata"]["name"]
    assert first[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    for doc in docs[1:]:
        assert doc["metadata"]["namespace"] == namespace, doc["metadata"]


def test_the_worker_is_a_privileged_daemonset_advertising_its_pod_ip() -> None:
    worker = _worker()
    pod = worker["spec"]["template"]["spec"]
    spec = container(worker)
    argv = _argv(spec)
    assert flag(argv, "--role") == "worker"
    port = int(flag(argv, "--port"))
    assert flag(argv, "--advertise") == f"http://$(POD_IP):{port}"
    assert env_sources(spec)["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert [p["containerPort"] for p in spec["ports"]] == [port]
    assert spec["securityContext"]["privileged"] is True
    assert not pod.get("hostNetwork") and not pod.get("hostPID")  # ADR 0023
    assert pod["automountServiceAccountToken"] is False
    assert "limits" not in spec["resources"]  # sandboxes are in its cgroup
    assert pod["terminationGracePeriodSeconds"] >= _grace(argv) + 20


def test_workers_hold_no_store_credentials_and_read_the_secret_from_a_private_file() -> None:
    worker = _worker()
    pod = worker["spec"]["template"]["spec"]
    spec = container(worker)
    env = env_sources(spec)
    assert not {"KINDLING_STORE", "KINDLING_COUNTING", "KINDLING_CLUSTER_SECRET"} & set(env)
    assert "envFrom" not in spec
    path = env["KINDLING_CLUSTER_SECRET_FILE"]["value"]
    mounts = {m["name"]: m for m in spec["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "kindling-cluster"
    assert path == f"{mounts[volume['name']]['mountPath']}/cluster-secret"
    assert volume["secret"]["defaultMode"] & 0o077 == 0  # config.read_secret_file refuses more
    assert "fsGroup" not in pod.get("securityContext", {})  # which would add group read


def test_the_control_nodes_are_unprivileged_with_stable_names_every_worker_names() -> None:
    control = _control()
    pod = control["spec"]["template"]["spec"]
    spec = container(control)
    argv = _argv(spec)
    assert flag(argv, "--role") == "control"
    assert control["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["terminationGracePeriodSeconds"] >= _grace(argv) + 20
    port = int(flag(argv, "--port"))
    peers = find("Service", control["spec"]["serviceName"])
    assert peers["spec"]["clusterIP"] == "None"
    assert peers["spec"]["selector"] == control["spec"]["selector"]["matchLabels"]
    namespace = control["metadata"]["namespace"]
    expected = [
        f"http://{control['metadata']['name']}-{i}.{peers['metadata']['name']}"
        f".{namespace}.svc:{port}"
        for i in range(control["spec"]["replicas"])
    ]
    assert flag(_argv(container(_worker())), "--control").split(",") == expected
    api = find("Service", "kindling")
    assert api["spec"]["selector"] == control["spec"]["selector"]["matchLabels"]
    assert [p["port"] for p in api["spec"]["ports"]] == [port]


@pytest.mark.parametrize(
    ("kind", "name", "path"),
    [
        ("StatefulSet", "kindling-control", "/_kindling/health/live"),
        ("DaemonSet", "kindling-worker", HEALTH_PATH),
    ],
)
def test_probes_ask_a_path_that_needs_no_signature(kind: str, name: str, path: str) -> None:
    spec = container(find(kind, name))
    port_names = {p["name"]: p["containerPort"] for p in spec["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = spec[probe]["httpGet"]
        assert get["path"] == path and get["port"] in port_names, (probe, get)


def test_secrets_are_referenced_and_their_only_literals_are_refused_placeholders() -> None:
    for secret in of_kind("Secret"):
        assert "data" not in secret
        for key, text in secret["stringData"].items():
            assert PLACEHOLDER.fullmatch(text), f"{secret['metadata']['name']}.{key}"
    placeholder = find("Secret", "kindling-cluster")["stringData"]["cluster-secret"]
    with pytest.raises(ValueError, match="at least"):
        cluster.check_secret(placeholder)  # a forgotten fill-in stops kindling at start
    for workload in [*of_kind("StatefulSet"), *of_kind("DaemonSet")]:
        spec = container(workload)
        for name, source in env_sources(spec).items():
            if any(word in name for word in SECRET_WORDS) and not name.endswith("_FILE"):
                assert "value" not in source and "secretKeyRef" in source["valueFrom"], name
        assert not any(PLACEHOLDER.search(w) for w in _argv(spec))
        assert "--cluster-secret" not in " ".join(_argv(spec))


def test_one_image_for_every_role() -> None:
    images = {container(w)["image"] for w in [_control(), _worker()]}
    assert len(images) == 1, images


@pytest.mark.parametrize("version", ["1.25.0", "1.37.0"])  # the oldest and newest schemas
def test_every_document_matches_the_kubernetes_schema_strictly(version: str) -> None:
    """Against the API's own schemas (kubernetes-validate), unknown fields refused: a
    misspelt field would otherwise be dropped by the API server without a word."""
    import kubernetes_validate

    for doc in documents():
        kubernetes_validate.validate(doc, version, strict=True)
    broken = find("DaemonSet", "kindling-worker")
    broken["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 90
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)
