"""One typed, frozen settings object, built once at start.

Sources, strongest first: command-line flags, ``OPENMESSENGER_*`` environment
variables, a TOML file (``--config`` / ``OPENMESSENGER_CONFIG``), defaults.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import limits
import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from openmessenger.core.errors import InvalidInput
from openmessenger.core.ids import is_loopback_host, parse_domain
from openmessenger.plan_settings import PlansSetting

NODE_SECRET_FILE_NAME = "node_secret"  # noqa: S105 - a file name
DATABASE_FILE_NAME = "openmessenger.db"
_PROXY_SCHEMES = ("socks5h://", "socks5://", "socks4://", "http://")


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
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # TLS served by the node itself (both or neither); federation needs HTTPS.
    tls_cert: Path | None = Field(default=None, description="PEM certificate chain")
    tls_key: Path | None = Field(default=None, description="PEM private key")
    # Outbound HTTPS trusts the system store (SSL_CERT_FILE is honoured) plus this bundle.
    ca_file: Path | None = Field(default=None, description="extra PEM CA bundle to trust")
    federation_proxy: str | None = Field(
        default=None, description="socks5h://host:port: every outbound federation request uses it"
    )
    federation_proxy_required: bool = Field(
        default=False, description="refuse to start without federation_proxy (never go direct)"
    )
    federation_give_up_seconds: float = Field(
        default=86_400, gt=0, description="after this long an undelivered message is failed"
    )
    federation_timeout_seconds: float = Field(default=10, gt=0)
    # Per remote domain and per remote address, on the /openmsg/ endpoints
    # (the ``limits`` library's notation, e.g. "1000/second").
    openmsg_domain_rate_limit: str = "2000/second"
    openmsg_address_rate_limit: str = "100/second"
    openmsg_auth_rate_limit: str = "30/minute"

    # Registered accounts (docs/apps.md): verification codes by e-mail and SMS.
    smtp_host: str | None = Field(default=None, description="SMTP server for verification mail")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = Field(default=True, description="upgrade the SMTP connection with TLS")
    smtp_from: str | None = Field(
        default=None, description="sender address (default: openmessenger@DOMAIN)"
    )
    sms_webhook_url: str | None = Field(
        default=None, description="HTTPS URL the node POSTs {to, text} to, to send an SMS"
    )
    sms_webhook_secret: SecretStr | None = Field(
        default=None, description="signs SMS webhook requests (HMAC-SHA256)"
    )

    # The app gateway (docs/apps.md).
    operator_token: SecretStr | None = Field(
        default=None, description="lets `openmessenger admin --url` run operator commands remotely"
    )
    operator_token_file: Path | None = None
    grant_key_dir: Path | None = Field(
        default=None,
        description="per-(account, app) keys, kept out of database backups (data_dir/grant-keys)",
    )
    rate_limit_storage: str = Field(
        default="memory://", description="limits storage URI: memory:// or redis://host:port"
    )
    # Requests on the client and app API (limits notation), per API key, per
    # account and per device; past one the answer is 429 with Retry-After.
    app_key_rate_limit: str = "1000/second"
    account_rate_limit: str = "100/second"
    device_rate_limit: str = "50/second"
    # Contact requests one account may send (docs/conversations.md), delivered or not.
    contact_request_rate_limit: str = "20/hour"
    webhook_timeout_seconds: float = Field(default=10, gt=0)
    webhook_give_up_seconds: float = Field(default=86_400, gt=0)
    webhook_log_days: float = Field(
        default=30, gt=0, description="how long the delivery log keeps settled deliveries"
    )
    # Plans and policies (docs/conversations.md, docs/operations.md "Plans").
    plans: PlansSetting = Field(
        default_factory=PlansSetting, description="each plan's limits: [plans.free] etc."
    )
    retention_sweep_seconds: float = Field(
        default=600, gt=0, description="how often expired history is deleted"
    )
    # Ephemeral (disappearing) messages, relayed from memory only (docs/conversations.md).
    ephemeral_hold_seconds: float = Field(
        default=120, gt=0, le=120, description="the longest an undelivered one is held (<= 120)"
    )
    ephemeral_max_body_chars: int = Field(default=8192, ge=512, le=65_536)
    ephemeral_max_pending_per_device: int = Field(
        default=100, ge=1, le=100_000, description="held for one device, and from one device"
    )
    ephemeral_max_pending_total: int = Field(
        default=5000, ge=1, le=1_000_000, description="held by one node process in all"
    )
    config: Path | None = Field(default=None, description="TOML file with any of these settings")

    @field_validator("domain")
    @classmethod
    def _valid_domain(cls, value: str) -> str:
        try:
            return parse_domain(value)
        except InvalidInput as exc:
            raise ValueError(exc.reason) from None

    @field_validator(
        "openmsg_domain_rate_limit",
        "openmsg_address_rate_limit",
        "openmsg_auth_rate_limit",
        "app_key_rate_limit",
        "account_rate_limit",
        "device_rate_limit",
        "contact_request_rate_limit",
    )
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError:
            raise ValueError("must read like 100/second or 30/minute") from None
        return value

    @field_validator("sms_webhook_url")
    @classmethod
    def _valid_sms_webhook(cls, value: str | None) -> str | None:
        # The phone number and the code travel in it: never in clear over a network.
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and is_loopback_host(parts.hostname or ""):
            return value
        raise ValueError("must be an https:// URL (http:// only to this machine)")

    @field_validator("rate_limit_storage")
    @classmethod
    def _valid_limit_storage(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://", "redis+unix://")):
            raise ValueError("must be memory://, or a redis://, rediss:// or redis+unix:// URL")
        return value

    @field_validator("federation_proxy")
    @classmethod
    def _valid_proxy(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_PROXY_SCHEMES):
            raise ValueError("must be a socks5h://, socks5://, socks4:// or http:// URL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.federation_proxy_required and not self.federation_proxy:
            raise ValueError("federation_proxy_required is set but no federation_proxy is given")
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

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

    def effective_grant_key_dir(self) -> Path:
        return self.grant_key_dir or self.data_dir / "grant-keys"

    def load_operator_token(self) -> str | None:
        """The token that authorises remote operator commands; None: local only."""
        if self.operator_token is not None:
            token = self.operator_token.get_secret_value()
        elif self.operator_token_file is not None:
            token = self.operator_token_file.read_text().strip()
        else:
            return None
        if len(token) < 32:
            raise ValueError("the operator token must be at least 32 characters")
        return token

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
