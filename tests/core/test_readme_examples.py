"""Every concrete example in README.md runs as shown against the shipped `bgjobs.toml` and
jobs, and says on the terminal what happened."""

from __future__ import annotations

import re
import shlex
import textwrap

from tests.support.shipped import use_shipped_config
from tests.support.workspace import REPO, Workspace

_FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)
_PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_-]+\b|\[")
"""`CLASS`, `ID`, `[--flag]`: a synopsis, not an example."""


def _blocks(language: str) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [m["body"] for m in _FENCE.finditer(text) if m["lang"] == language]


def shell_examples() -> list[list[str]]:
    commands = []
    for block in _blocks("sh"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if not words or _PLACEHOLDER.search(" ".join(words[1:])):
                continue
            if words[0] == "bgjobctl" or words[:2] == ["python", "run_job.py"]:
                commands.append(words)
    return commands


def python_examples() -> list[str]:
    # The transactional enqueue's recipes need an application's PostgreSQL database and
    # models: tests/client/test_transactional.py runs them as the README writes them.
    return [
        block
        for block in _blocks("python")
        if "from bgjobctl import" in block and "enqueue_in(" not in block
    ]


def test_the_readme_has_examples_to_run() -> None:
    assert len(shell_examples()) >= 6
    assert len(python_examples()) >= 3


def test_every_readme_example_runs_as_shown(workspace: Workspace) -> None:
    use_shipped_config(workspace)
    workspace.start_daemon()
    for words in shell_examples():
        if words[0] == "bgjobctl":
            done = workspace.bgjobctl(*words[1:], timeout=90)
        else:
            done = workspace.run_job(*words[2:], timeout=90)
        shown = " ".join(words)
        assert done.returncode == 0, f"{shown}\n{done.stdout}{done.stderr}"
        assert (done.stdout + done.stderr).strip(), f"{shown} printed nothing"
    for block in python_examples():
        code = block
        if "await " in block:
            code = "import asyncio\n\nasync def main():\n" + textwrap.indent(block, "    ")
            code += "\nasyncio.run(main())\n"
        done = workspace.run("-c", code, timeout=90)
        assert done.returncode == 0, f"{code}\n{done.stdout}{done.stderr}"


def test_run_job_says_what_happened(workspace: Workspace) -> None:
    use_shipped_config(workspace)
    done = workspace.run_job("LessonCreatedService", "handle", "English Grammar 101")
    assert done.returncode == 0
    assert "succeeded" in done.stdout and "English Grammar 101" in done.stdout
    use_shipped_config(workspace, retry_attempts=0)
    failed = workspace.run_job("LessonEndedService", "handle", "only-one-param")
    assert failed.returncode == 1
    assert "failed after 1 attempt" in failed.stderr and "TypeError" in failed.stderr


def test_a_failed_wait_says_it_once(workspace: Workspace) -> None:
    use_shipped_config(workspace, retry_attempts=0)
    workspace.start_daemon()
    done = workspace.bgjobctl("submit", "LessonEndedService", "handle", "x", "--wait")
    assert done.returncode == 1
    assert done.stdout.count("failed") == 1, done.stdout
