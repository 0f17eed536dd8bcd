from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from openmessenger.cli.main import app
from tests.support.sdk import REQUEST_TIMEOUT_SECONDS
from tests.support.smtp import SmtpServer


@pytest.fixture
async def http(node_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node_url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        yield client


@pytest.fixture
def run(node_url: str, cli_home: Path) -> Callable[..., Result]:
    """``run("alice", "whoami", "--json")``: the command as profile alice; exit code checked."""
    runner = CliRunner()
    env = {"OPENMESSENGER_HOME": str(cli_home), "OPENMESSENGER_SERVER": node_url}

    def invoke(profile: str, *args: str, exit_code: int = 0) -> Result:
        result = runner.invoke(app, [*args, "--profile", profile], env=env)
        assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
        return result

    return invoke


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback that keeps what it receives."""
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()
