"""Helpers the tests share: workspaces, real daemon processes, polling with deadlines."""
