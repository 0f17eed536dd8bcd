"""The one table from domain errors to HTTP: RFC 9457 problem details with a
stable machine ``code`` and, for bad input, the field named."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from openmessenger.core import errors
from openmessenger.protocol.client_api import Problem, ProblemField

PROBLEM_JSON = "application/problem+json"

_STATUS: dict[type[errors.DomainError], tuple[int, str]] = {
    errors.InvalidInput: (422, "Invalid input"),
    errors.Unauthenticated: (401, "Unauthenticated"),
    errors.Forbidden: (403, "Forbidden"),
    errors.Refused: (403, "Refused"),
    errors.NotFound: (404, "Not found"),
    errors.Conflict: (409, "Conflict"),
    errors.LimitExceeded: (429, "Limit exceeded"),
    errors.RateLimited: (429, "Too many requests"),
    errors.Unavailable: (503, "Not available on this node"),
    errors.PeerUnavailable: (502, "Peer node unavailable"),
}


def problem_response(
    status: int,
    title: str,
    code: str,
    detail: str | None = None,
    *,
    field: str | None = None,
    field_errors: list[ProblemField] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    problem = Problem(
        title=title, status=status, code=code, detail=detail, field=field, errors=field_errors
    )
    return JSONResponse(
        problem.model_dump(mode="json", exclude_none=True),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def domain_problem(exc: errors.DomainError) -> JSONResponse:
    """The problem answer for a domain error: the one table in use."""
    status, title = next(
        (v for cls, v in _STATUS.items() if isinstance(exc, cls)), (400, "Bad request")
    )
    field = getattr(exc, "field", None)
    detail = exc.reason if isinstance(exc, errors.InvalidInput) else exc.message
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, errors.RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    return problem_response(status, title, exc.code, detail, field=field, headers=headers)


def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DomainError)
    return domain_problem(exc)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = list(exc.errors())
    if any(p.get("type") == "json_invalid" for p in problems):
        return problem_response(
            400, "Malformed JSON", "malformed_json", "The request body is not valid JSON."
        )
    fields = [ProblemField(field=_field_name(p["loc"]), message=p["msg"]) for p in problems]
    return problem_response(
        422,
        "Invalid input",
        "invalid_input",
        "; ".join(f"{f.field}: {f.message}" for f in fields),
        field=fields[0].field if fields else None,
        field_errors=fields,
    )


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
        exc.status_code, "http_error"
    )
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(exc.status_code, str(exc.detail), code, headers=headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
