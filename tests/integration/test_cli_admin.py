"""``openmessenger admin``: the node's switches, set in its database."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from openmessenger.cli.main import app


def admin(database_url: str, *args: str, exit_code: int = 0) -> str:
    result = CliRunner().invoke(app, ["admin", *args, "--database-url", database_url])
    assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
    return result.stdout


def test_maintenance_turns_on_and_off_and_says_so(database_url: str) -> None:
    assert admin(database_url, "maintenance") == "maintenance off\n"
    assert admin(database_url, "maintenance", "on") == "maintenance on\n"
    assert admin(database_url, "maintenance", "status") == "maintenance on\n"
    assert admin(database_url, "maintenance", "off") == "maintenance off\n"
    assert "maintenance" not in admin(database_url, "maintenance", "sideways", exit_code=2)


def test_domains_are_blocked_listed_and_unblocked(database_url: str) -> None:
    assert admin(database_url, "domains", "block", "Spam.Example.") == "blocked spam.example\n"
    assert admin(database_url, "domains", "block", "spam.example") == (
        "spam.example was already blocked\n"
    )
    admin(database_url, "domains", "block", "junk.test")
    assert admin(database_url, "domains", "list") == "junk.test\nspam.example\n"
    assert admin(database_url, "domains", "unblock", "spam.example") == "unblocked spam.example\n"
    assert admin(database_url, "domains", "unblock", "spam.example") == (
        "spam.example was not blocked\n"
    )
    assert admin(database_url, "domains", "list") == "junk.test\n"
    admin(database_url, "domains", "block", "not_a domain", exit_code=2)


def test_the_data_dir_points_at_the_node_as_serve_does(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["admin", "maintenance", "on", "--data-dir", str(tmp_path / "node")]
    )
    assert result.exit_code == 0, result.stdout
    assert (tmp_path / "node" / "openmessenger.db").exists()
