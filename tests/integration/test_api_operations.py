"""What an operator relies on: health, metrics, OpenAPI, and logs that keep secrets out."""

from __future__ import annotations

import httpx

from tests.support.api import connected_pair


async def test_health_metrics_and_openapi(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok", "domain": "localhost"}
    await connected_pair(http)
    metrics = (await http.get("/metrics")).text
    assert (
        'openmessenger_http_requests_total{method="POST",route="/v1/connections",status="201"} 1.0'
        in metrics
    )
    spec = (await http.get("/v1/openapi.json")).json()
    for path in ("/v1/messages", "/v1/sync", "/v1/codes", "/v1/connections", "/v1/devices"):
        assert path in spec["paths"]
    assert "swagger" in (await http.get("/v1/docs")).text.lower()
