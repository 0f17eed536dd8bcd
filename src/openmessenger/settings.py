"""One typed, frozen settings object, built once at start.

Sources, strongest first: command-line flags, ``OPENMESSENGER_*`` environment
variables, a TOML file (``--config`` / ``OPENMESSENGER_CONFIG``), defaults.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from openmessenger.core.errors import InvalidInput
from openmessenger.core.ids import parse_domain

NODE_SECRET_FILE_NAME = "node_secret"  # noqa: S105 - a file name
DATABASE_FILE_NAME = "openmessenger.db"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("openmessenger")) / "node"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENMESSENGER_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    domain: str = "localhost"
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = Field(
        default=None, description="SQLite (default: a file in data_dir) or PostgreSQL URL"
    )
    node_secret: SecretStr | None = Field(default=None, description="hex, at least 32 bytes")
    node_secret_file: Path | None = None
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    max_request_bytes: int = Field(default=256 * 1024, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    config: Path | None = Field(default=None, description="TOML file with any of these settings")

    @field_validator("domain")
    @classmethod
    def _valid_domain(cls, value: str) -> str:
        try:
            return parse_domain(value)
        except InvalidInput as exc:
            raise ValueError(exc.reason) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file_from(init_settings)
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / DATABASE_FILE_NAME}"

    def load_node_secret(self) -> bytes:
        """The secret under which codes and tokens are HMAC'd.

        Given directly or as a file; otherwise made once in the data directory.
        Several processes of one node must share it (set it explicitly then).
        """
        if self.node_secret is not None:
            return _decode_secret(self.node_secret.get_secret_value(), "node_secret")
        if self.node_secret_file is not None:
            text = self.node_secret_file.read_text().strip()
            return _decode_secret(text, "node_secret_file")
        path = self.data_dir / NODE_SECRET_FILE_NAME
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
        return _decode_secret(path.read_text().strip(), str(path))


def _config_file_from(init_settings: PydanticBaseSettingsSource) -> Path | None:
    given: Any = init_settings().get("config") or os.environ.get("OPENMESSENGER_CONFIG")
    return Path(given) if given else None


def _decode_secret(text: str, where: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{where}: the node secret must be hex") from None
    if len(raw) < 32 or len(set(raw)) < 8:
        raise ValueError(
            f"{where}: the node secret must be 32 random bytes or more (64 hex digits)"
        )
    return raw
