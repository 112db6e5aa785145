from __future__ import annotations

from django.db import models


class Order(models.Model):
    title = models.CharField(max_length=200)
    processed = models.BooleanField(default=False)
