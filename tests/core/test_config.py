"""Every configuration error is one message naming the key, and exit code 2."""

from __future__ import annotations

import json

import pytest

from tests.support.workspace import Workspace

BAD_CONFIGS = [
    ("retry_attempts = 3\nretyr_delay_seconds = 5\n", "retyr_delay_seconds: unknown key"),
    ('retry_attempts = "3"\n', "retry_attempts: Expected `int`, got `str`"),
    ("retry_attempts = -1\n", "retry_attempts: Expected `int` >= 0"),
    ("[daemon]\nworkers = 0\n", "daemon.workers: Expected `int` >= 1"),
    ('[daemon]\nsockt = "x"\n', "daemon.sockt: unknown key"),
    (
        '[allowed_jobs]\nEcho = ["handle"]\n[job_priority]\nEcho = "urgent"\n',
        "job_priority.Echo: 'urgent' is not a priority",
    ),
    (
        '[allowed_jobs]\nEcho = ["handle"]\n[job_priority]\nOther = "high"\n',
        "job_priority.Other: class is not in allowed_jobs",
    ),
    (
        '[allowed_jobs]\nEcho = ["handle"]\n[jobs.Other]\ntimeout = 5\n',
        "jobs.Other: class is not in allowed_jobs",
    ),
    ('[allowed_jobs]\nEcho = ["_secret"]\n', "allowed_jobs.Echo: method '_secret' starts with '_'"),
    (
        '[allowed_jobs]\nEcho = ["__init__"]\n',
        "allowed_jobs.Echo: method '__init__' starts with '_'",
    ),
    ('[allowed_jobs]\n"os.path" = ["join"]\n', "allowed_jobs.os.path: class name must be a plain"),
    (
        '[allowed_jobs]\nEcho = ["handle"]\n[jobs.Echo]\nbackoff = "linear"\n',
        "jobs.Echo.backoff: Invalid enum value 'linear'",
    ),
    (
        '[allowed_jobs]\nEcho = ["handle"]\n[jobs.Echo]\ntimeout = 0\n',
        "jobs.Echo.timeout: Expected `float` > 0.0",
    ),
    ("max_execution_time = [1]\n", "max_execution_time: Expected `float`, got `array`"),
    ("retry_attempts = \n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_bad_config_is_named_and_exits_2(workspace: Workspace, text: str, message: str) -> None:
    workspace.write_config(raw=text)
    for command in (
        workspace.run("-m", "bgjobd", "--check-config"),
        workspace.run_job("Echo", "handle"),
        workspace.run("-m", "bgjobd"),
    ):
        assert command.returncode == 2, command.stderr
        assert message in command.stderr
        assert str(workspace.config_path) in command.stderr
    assert not (workspace.storage / "bgjobs.db").exists()


def test_check_config_prints_the_resolved_configuration(workspace: Workspace) -> None:
    done = workspace.run("-m", "bgjobd", "--check-config")
    assert done.returncode == 0, done.stderr
    resolved = json.loads(done.stdout)
    assert resolved["config_file"] == str(workspace.config_path)
    assert resolved["storage"] == str(workspace.root / "storage")
    assert resolved["settings"]["allowed_jobs"]["Echo"] == ["handle"]


def test_original_keys_keep_their_meaning(workspace: Workspace) -> None:
    """The PHP config's keys, ported line by line."""
    workspace.write_config(
        raw="""
retry_attempts = 3
retry_delay_seconds = 5
max_execution_time = 300
jobs_package = "testjobs"
[allowed_jobs]
Echo = ["handle"]
Fail = ["handle"]
[job_priority]
Echo = "high"
Fail = "low"
"""
    )
    done = workspace.run("-m", "bgjobd", "--check-config")
    assert done.returncode == 0, done.stderr
    settings = json.loads(done.stdout)["settings"]
    assert settings["retry_attempts"] == 3
    assert settings["job_priority"] == {"Echo": "high", "Fail": "low"}


def test_discovery_order(workspace: Workspace) -> None:
    """--config beats $BGJOBS_CONFIG, which beats ./bgjobs.toml."""
    other = workspace.root / "other.toml"
    other.write_text('jobs_package = "elsewhere"\n')
    by_flag = workspace.run("-m", "bgjobd", "--check-config", "--config", str(other))
    assert json.loads(by_flag.stdout)["settings"]["jobs_package"] == "elsewhere"
    by_env = workspace.run("-m", "bgjobd", "--check-config")
    assert json.loads(by_env.stdout)["config_file"] == str(workspace.config_path)
    workspace.env.pop("BGJOBS_CONFIG")
    (workspace.root / "bgjobs.toml").write_text('jobs_package = "local"\n')
    by_cwd = workspace.run("-m", "bgjobd", "--check-config")
    assert json.loads(by_cwd.stdout)["settings"]["jobs_package"] == "local"


def test_missing_named_config_is_an_error(workspace: Workspace) -> None:
    done = workspace.run("-m", "bgjobd", "--check-config", "--config", "/nonexistent/x.toml")
    assert done.returncode == 2
    assert "/nonexistent/x.toml: configuration file not found" in done.stderr
