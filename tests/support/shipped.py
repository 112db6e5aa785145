"""A workspace that uses the repository's shipped `bgjobs.toml` and `jobs` package, as a
new user would, with only its socket moved into the test's directory and no dashboard."""

from __future__ import annotations

import tomllib

import tomli_w

from tests.support.workspace import REPO, Workspace


def use_shipped_config(workspace: Workspace, **overrides: object) -> None:
    settings = tomllib.loads((REPO / "bgjobs.toml").read_text(encoding="utf-8"))
    settings["daemon"]["socket"] = str(workspace.socket_path)
    settings["dashboard"] = {"enabled": False}  # its port may be taken on a shared machine
    settings.update(overrides)
    workspace.write_config(raw=tomli_w.dumps(settings))
    jobs = workspace.root / "jobs"
    if not jobs.exists():
        jobs.symlink_to(REPO / "jobs", target_is_directory=True)
