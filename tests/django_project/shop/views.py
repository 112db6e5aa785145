from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

try:
    from django.tasks import TaskResultStatus  # Django 6
except ImportError:
    from django_tasks import TaskResultStatus
from shop.models import Order
from shop.tasks import process_order


@csrf_exempt
def create_order(request: HttpRequest) -> JsonResponse:
    """Saves an order and enqueues its processing once the order is committed; with
    `?fail=1` the transaction rolls back, and no job may exist."""
    enqueued: list[Any] = []
    try:
        with transaction.atomic():
            order = Order.objects.create(title=request.GET.get("title", "?"))
            transaction.on_commit(lambda: enqueued.append(process_order.enqueue(order.id)))
            if request.GET.get("fail"):
                raise RuntimeError("the order could not be saved")
    except RuntimeError as exc:
        return JsonResponse({"error": str(exc)}, status=409)
    return JsonResponse({"order": order.id, "result_id": enqueued[0].id})


def order(request: HttpRequest, order_id: int) -> JsonResponse:
    found = Order.objects.get(pk=order_id)
    return JsonResponse({"order": found.id, "processed": found.processed})


def result(request: HttpRequest, result_id: str) -> JsonResponse:
    found = process_order.get_result(result_id)
    answer: dict[str, Any] = {"status": str(found.status), "attempts": found.attempts}
    if found.status == TaskResultStatus.SUCCESSFUL:
        answer["return_value"] = found.return_value
    return JsonResponse(answer)
