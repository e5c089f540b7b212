"""deploy/kubernetes/ as data: every document of every file, found by kind and name, and a
container's command line with Kubernetes' ``$(VAR)`` expansion."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"


def files() -> list[Path]:
    """In the order ``kubectl apply -f deploy/kubernetes/`` takes them."""
    return sorted(KUBERNETES.glob("*.yaml"))


def documents() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in files():
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return found


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    """The workload's one container."""
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, [c["name"] for c in containers]
    return dict(containers[0])


def env_sources(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in spec.get("env", [])}


def expand(words: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' expansion of ``$(VAR)`` in command and args (a reference to a variable
    the container does not define stays as written, as Kubernetes leaves it)."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), w) for w in words]


def flag(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, f"{name} once in {argv}"
    return argv[argv.index(name) + 1]
