"""``kindling`` as a user runs it from a shell, for the e2e tests of its commands
(test_cli, test_cli_commands, test_logging_config): this environment without its own
AWS settings, test credentials and us-east-1, as a user's profile would give."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from .support import KINDLING, Server


def run_kindling(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``kindling <args>`` (and ``env`` on top of the environment above)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    base.update(
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1"
    )
    base.update(env or {})
    return subprocess.run(
        [str(KINDLING), *args], capture_output=True, text=True, env=base, timeout=180
    )


def kindling_at(server: Server, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``kindling <args> --endpoint <server>``."""
    return run_kindling(*args, "--endpoint", server.endpoint, **kw)
