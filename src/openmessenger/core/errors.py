"""The domain error tree. Errors say what went wrong, never an HTTP status;
the API edge maps them in one table (``api/errors.py``).

    DomainError
    ├── InvalidInput        a field failed validation (names the field)
    ├── Unauthenticated     no valid credential
    ├── Forbidden           authenticated, but not allowed
    ├── NotFound            the named thing does not exist (for the caller)
    ├── Conflict            the request clashes with current state
    ├── Refused             the generic silent refusal: unknown address, wrong,
    │                       expired or used pass code, no connection. It never
    │                       says which, so a prober learns nothing.
    ├── LimitExceeded       a size, count or rate limit
    └── PeerUnavailable     another node could not be reached (try again later)
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a service raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    code = "invalid_input"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class Unauthenticated(DomainError):
    code = "unauthenticated"


class Forbidden(DomainError):
    code = "forbidden"

    def __init__(self, message: str, *, code: str = "forbidden") -> None:
        super().__init__(message)
        self.code = code


class NotFound(DomainError):
    code = "not_found"

    def __init__(self, message: str, *, code: str = "not_found") -> None:
        super().__init__(message)
        self.code = code


class Conflict(DomainError):
    code = "conflict"

    def __init__(self, message: str, *, code: str = "conflict") -> None:
        super().__init__(message)
        self.code = code


class Refused(DomainError):
    """One answer for every refusal a stranger could learn from."""

    code = "refused"

    def __init__(self) -> None:
        super().__init__("The request was refused.")


class LimitExceeded(DomainError):
    code = "limit_exceeded"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RateLimited(DomainError):
    """Too many requests for now; ``retry_after`` seconds until the window allows one."""

    code = "rate_limited"

    def __init__(self, what: str, retry_after: int) -> None:
        super().__init__(f"Too many requests for this {what}; retry after {retry_after} s.")
        self.retry_after = retry_after


class Unavailable(DomainError):
    """The node is not set up for this (e.g. no SMTP server configured)."""

    code = "unavailable"

    def __init__(self, message: str, *, code: str = "unavailable") -> None:
        super().__init__(message)
        self.code = code


class PeerUnavailable(DomainError):
    code = "peer_unavailable"

    def __init__(self, domain: str) -> None:
        super().__init__(f"The node {domain} could not be reached; try again later.")
        self.domain = domain
