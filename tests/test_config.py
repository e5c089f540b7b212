"""Config.from_env: the settings read from KINDLING_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from kindling.config import Config


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("0", False), ("", False), ("1", True), ("true", True), ("ON", True)],
)
def test_snapstart_latest_is_off_unless_asked_for(value: str | None, expected: bool) -> None:
    env = {} if value is None else {"KINDLING_SNAPSTART_LATEST": value}
    assert Config.from_env(env).snapstart_latest is expected


def test_egress_allow_from_env() -> None:
    config = Config.from_env({"KINDLING_EGRESS_ALLOW": "10.0.0.0/8, 192.168.1.5"})
    assert [str(n) for n in config.egress_allow] == ["10.0.0.0/8", "192.168.1.5/32"]
    assert Config.from_env({}).egress_allow == ()


def test_shutdown_grace_defaults_to_its_limit_and_is_read_from_the_environment() -> None:
    from kindling.limits import SHUTDOWN_GRACE_S

    assert Config.from_env({}).shutdown_grace_s == SHUTDOWN_GRACE_S == 30.0
    assert Config.from_env({"KINDLING_SHUTDOWN_GRACE_S": "2.5"}).shutdown_grace_s == 2.5
    assert Config().with_overrides(shutdown_grace_s=0.0).shutdown_grace_s == 0.0


def test_http_timeouts_default_to_the_limits_and_can_be_set() -> None:
    from kindling import limits

    assert Config.from_env({}).http_timeouts_s == (
        limits.FRONTEND_HEADER_TIMEOUT_S,
        limits.FRONTEND_BODY_TIMEOUT_S,
        limits.FRONTEND_IDLE_TIMEOUT_S,
    )
    assert Config.from_env({"KINDLING_HTTP_TIMEOUTS_S": "1,2.5,3"}).http_timeouts_s == (
        1.0,
        2.5,
        3.0,
    )


def test_cluster_roles_need_their_secret_and_a_worker_its_control(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cluster secret"):
        Config(role="control", data_dir=tmp_path)
    with pytest.raises(ValueError, match="--control"):
        Config(role="worker", data_dir=tmp_path, cluster_secret="s" * 64)
    with pytest.raises(ValueError, match="all, control or worker"):
        Config(role="leader", data_dir=tmp_path)
    assert Config(role="control", data_dir=tmp_path, cluster_secret="s" * 64).role == "control"
    assert "s" * 64 not in repr(Config(cluster_secret="s" * 64))  # never printed


def test_a_cluster_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("k" * 64 + "\n")
    path.chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        Config.from_env({"KINDLING_CLUSTER_SECRET_FILE": str(path)})
    path.chmod(0o600)
    config = Config.from_env(
        {"KINDLING_CLUSTER_SECRET_FILE": str(path), "KINDLING_ROLE": "control"}
    )
    assert config.cluster_secret == "k" * 64 and config.role == "control"


def test_a_worker_token_runs_a_worker_but_never_a_control_node(tmp_path: Path) -> None:
    from kindling.iam import cluster

    token = cluster.worker_token(b"s" * 64, "w1")
    worker = Config(
        role="worker", data_dir=tmp_path, cluster_secret=token, control_url="http://c:9000"
    )
    assert worker.cluster_secret == token
    with pytest.raises(ValueError, match="a worker token cannot run a control node"):
        Config(role="control", data_dir=tmp_path, cluster_secret=token)


def test_counting_is_in_process_unless_a_redis_is_named() -> None:
    assert Config.from_env({}).counting == ""
    url = "redis://127.0.0.1:6379/2"
    assert Config.from_env({"KINDLING_COUNTING": url}).counting == url
    assert Config.from_env({"KINDLING_COUNTING": "unix:///run/redis.sock?db=1"}).counting


@pytest.mark.parametrize(
    "value",
    ["postgresql://x/y", "127.0.0.1:6379", "redis:///0", "redis://h:1/zero", "redis://h:p/0"],
)
def test_counting_refuses_what_is_not_a_redis_url(value: str) -> None:
    with pytest.raises(ValueError, match="counting"):
        Config.from_env({"KINDLING_COUNTING": value})


def test_the_dev_key_follows_the_listening_address_unless_named(tmp_path: Path) -> None:
    """ADR 0036: the dev key only while listening on loopback, or when named."""
    assert Config(data_dir=tmp_path).dev_keys_enabled
    assert Config(data_dir=tmp_path, host="::1").dev_keys_enabled
    assert not Config(data_dir=tmp_path, host="0.0.0.0").dev_keys_enabled
    assert not Config(data_dir=tmp_path, host="10.1.2.3").dev_keys_enabled
    assert Config(data_dir=tmp_path, host="0.0.0.0", dev_keys=True).dev_keys_enabled
    assert not Config(data_dir=tmp_path, dev_keys=False).dev_keys_enabled
    env = {"KINDLING_DEV_KEYS": "1", "KINDLING_SERVER_KEY_FILE": str(tmp_path / "k")}
    loaded = Config.from_env(env)
    assert loaded.dev_keys is True and loaded.server_key_path == tmp_path / "k"
    assert Config.from_env({}).dev_keys is None
    assert Config(data_dir=tmp_path).server_key_path == tmp_path.resolve() / "server.key"


@pytest.mark.parametrize(("value", "expected"), [(None, False), ("1", True), ("0", False)])
def test_the_access_log_is_off_unless_asked_for(value: str | None, expected: bool) -> None:
    env = {} if value is None else {"KINDLING_ACCESS_LOG": value}
    assert Config.from_env(env).access_log is expected


def test_the_start_up_description_hides_passwords_and_says_the_mode() -> None:
    config = Config(
        store="postgresql://kindling:s3cret@db/kindling",
        counting="redis://:hush@cache:6379/0",
        host="0.0.0.0",
    )
    text = "\n".join(config.describe())
    assert "s3cret" not in text and "hush" not in text
    assert "postgresql://kindling:***@db/kindling" in text
    assert "redis://:***@cache:6379/0" in text
    assert "dev key off" in text and "access log off" in text
    local = "\n".join(Config(data_dir=Path("/srv/k")).describe())
    assert "store SQLite /srv/k/kindling.db" in local
    assert "dev mode: key test/test" in local and "namespace backend" in local


def test_the_broker_registry_is_in_the_data_dir_unless_named(tmp_path: Path) -> None:
    config = Config.from_env({"KINDLING_DATA_DIR": str(tmp_path)})
    assert config.brokers_path == tmp_path / "brokers.json"
    named = Config.from_env({"KINDLING_BROKERS_FILE": str(tmp_path / "mq.json")})
    assert named.brokers_path == tmp_path / "mq.json"
