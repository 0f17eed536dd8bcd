"""An app's webhook (its API key, scope ``webhooks``): where the node POSTs the
messages its users receive, and the log of those calls (docs/apps.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from openmessenger.api.deps import CurrentApp, Services
from openmessenger.protocol.client_api import API_PREFIX
from openmessenger.protocol.webhooks_api import (
    DeliveryList,
    DeliveryOut,
    DeliveryStateName,
    WebhookCreatedOut,
    WebhookIn,
    WebhookOut,
)
from openmessenger.services.ports import DeliveryState, WebhookDelivery
from openmessenger.services.webhooks import MAX_PAGE

router = APIRouter(prefix=API_PREFIX, tags=["apps"])


def _delivery(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        account_id=d.account_id,
        message_id=d.message_id,
        state=d.state.value,
        attempts=d.attempts,
        last_status=d.last_status,
        last_error=d.last_error,
        created_at=d.created_at,
        next_attempt_at=d.next_attempt_at,
        finished_at=d.finished_at,
    )


@router.put("/apps/{app}/webhook", response_model=WebhookCreatedOut)
async def put_webhook(
    app: str, body: WebhookIn, caller: CurrentApp, services: Services
) -> WebhookCreatedOut:
    """Set the webhook. The answer holds its signing secret, shown this once; each
    PUT makes a new secret (that is how it rotates)."""
    created = await services.webhooks.put(caller, body.url)
    return WebhookCreatedOut(url=created.url, secret=created.secret, created_at=created.created_at)


@router.get("/apps/{app}/webhook", response_model=WebhookOut)
async def get_webhook(app: str, caller: CurrentApp, services: Services) -> WebhookOut:
    found = await services.webhooks.get(caller)
    return WebhookOut(url=found.url, created_at=found.created_at)


@router.delete("/apps/{app}/webhook", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(app: str, caller: CurrentApp, services: Services) -> Response:
    """No more calls; deliveries still pending are dropped."""
    await services.webhooks.delete(caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/apps/{app}/webhook/deliveries", response_model=DeliveryList)
async def deliveries(
    app: str,
    caller: CurrentApp,
    services: Services,
    state: Annotated[DeliveryStateName | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> DeliveryList:
    """The delivery log, newest first."""
    found = await services.webhooks.deliveries(
        caller, DeliveryState(state) if state is not None else None, limit
    )
    return DeliveryList(deliveries=[_delivery(d) for d in found])
