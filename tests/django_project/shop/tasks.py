from __future__ import annotations

from typing import Any

try:
    from django.tasks import task  # Django 6
except ImportError:
    from django_tasks import task
from shop.models import Order


@task(priority=10)
def process_order(order_id: int) -> dict[str, Any]:
    """Marks the order processed, through the ORM, in a bgjobs worker."""
    order = Order.objects.get(pk=order_id)
    order.processed = True
    order.save(update_fields=["processed"])
    return {"order": order_id, "title": order.title}


@task()
def refuse(reason: str) -> None:
    raise ValueError(reason)


@task(priority=-5)
async def shout(text: str) -> str:
    return text.upper()
