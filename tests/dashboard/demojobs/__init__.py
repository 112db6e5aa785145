"""Job classes with everyday names, for the dashboard's screenshots."""

from __future__ import annotations

import time
from typing import Any


class LessonCreatedService:
    def handle(self, title: str) -> dict[str, Any]:
        print(f"New lesson created: {title}")
        return {"title": title, "notified": 3}


class SendWelcomeEmail:
    def handle(self, user_id: int, address: str) -> str:
        time.sleep(0.05)
        return f"sent to {address}"


class GenerateInvoicePdf:
    def handle(self, invoice: str, pages: int = 2) -> str:
        for page in range(1, int(pages) + 1):
            print(f"rendering page {page}/{pages}")
        return f"invoices/{invoice}.pdf"


class TranscodeVideo:
    def handle(self, video_id: str, seconds: float = 600) -> str:
        for step in range(1, 4):
            print(f"segment {step}/120 encoded (1080p, h264)", flush=True)
        time.sleep(float(seconds))
        return f"videos/{video_id}.mp4"


class ExportReport:
    def handle(self, name: str, seconds: float = 600) -> str:
        print(f"exporting {name}: 18,204 rows", flush=True)
        time.sleep(float(seconds))
        return f"reports/{name}.csv"


class SyncCrmContacts:
    def handle(self, account: str) -> None:
        print(f"connecting to crm.example.com for account {account}")
        raise ConnectionRefusedError("crm.example.com:443 refused the connection")


class SendReport:
    def handle(self, previous: Any, recipient: str) -> str:
        return f"report sent to {recipient}"
