"""Settings: flags win over OPENMESSENGER_* variables, which win over the TOML file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from openmessenger.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HOST", "PORT", "DOMAIN", "DATA_DIR", "DATABASE_URL", "CONFIG", "NODE_SECRET"):
        monkeypatch.delenv(f"OPENMESSENGER_{name}", raising=False)


def test_defaults_are_a_local_node_on_sqlite(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert (settings.host, settings.port, settings.domain) == ("127.0.0.1", 8080, "localhost")
    assert settings.effective_database_url() == f"sqlite:///{tmp_path}/openmessenger.db"


def test_flags_beat_environment_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "node.toml"
    config.write_text('domain = "file.example"\nport = 1111\nhost = "127.0.0.2"\n')
    monkeypatch.setenv("OPENMESSENGER_CONFIG", str(config))
    monkeypatch.setenv("OPENMESSENGER_PORT", "2222")
    monkeypatch.setenv("OPENMESSENGER_DOMAIN", "env.example")
    settings = Settings(domain="Flag.Example")
    assert settings.domain == "flag.example"
    assert settings.port == 2222
    assert settings.host == "127.0.0.2"


def test_a_bad_domain_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="domain"):
        Settings(domain="bad_domain.io")


def test_the_node_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = settings.load_node_secret()
    assert len(first) == 32
    assert settings.load_node_secret() == first
    mode = stat.S_IMODE((tmp_path / "data" / "node_secret").stat().st_mode)
    assert mode == 0o600


@pytest.mark.parametrize("secret", ["00" * 32, "changeme", "ab" * 8])
def test_placeholder_secrets_are_refused(secret: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="node secret"):
        Settings(data_dir=tmp_path, node_secret=secret).load_node_secret()


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://sms.example/send", True),
        ("http://127.0.0.1:8081/send", True),
        ("http://localhost/send", True),
        ("http://sms.example/send", False),
        ("ftp://sms.example/send", False),
        ("https:///send", False),
    ],
)
def test_the_sms_webhook_is_reached_over_tls_unless_it_is_on_this_machine(
    url: str, accepted: bool
) -> None:
    if accepted:
        assert Settings(sms_webhook_url=url).sms_webhook_url == url
    else:
        with pytest.raises(ValueError, match="sms_webhook_url"):
            Settings(sms_webhook_url=url)
