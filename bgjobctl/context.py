"""What every command gets: its arguments, the configuration, a client, and output."""

from __future__ import annotations

import argparse
import sys
from functools import cached_property
from typing import Any

import msgspec

from bgjobctl.address import Address, resolve_address
from bgjobctl.client import Client
from bgjobs.config import Config


class CommandContext:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json = bool(args.json)

    @cached_property
    def _resolved(self) -> tuple[Address, Config]:
        return resolve_address(self.args.config, self.args.socket)

    @property
    def config(self) -> Config:
        return self._resolved[1]

    @cached_property
    def client(self) -> Client:
        return Client(self._resolved[0])

    def print_json(self, value: Any) -> None:
        sys.stdout.write(msgspec.json.encode(value).decode() + "\n")

    def print(self, text: str = "") -> None:
        sys.stdout.write(text + "\n")
