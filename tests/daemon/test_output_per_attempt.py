"""The worker's output pipe lives as long as the worker: each attempt's output file still
holds that attempt's output and nothing of another's, silent attempts leave no file."""

from __future__ import annotations

from bgjobctl.library import make_spec
from tests.support.workspace import Workspace


def test_attempts_in_a_row_on_one_worker_keep_their_own_output(workspace: Workspace) -> None:
    workspace.write_config({"daemon": {"workers": 1}})
    workspace.start_daemon()
    client = workspace.client()
    specs = []
    for n in range(30):
        if n % 3:
            specs.append(make_spec("Printer", "handle", [f"job-{n}"]))
        else:
            specs.append(make_spec("Echo", "handle", [n]))  # prints nothing
    ids = client.submit(specs).ids
    for job_id in ids:
        client.wait(job_id, 30)
    output_dir = workspace.storage / "logs" / "jobs"
    for n, job_id in enumerate(ids):
        path = output_dir / f"{job_id}.log"
        if n % 3 == 0:
            assert not path.exists(), path.read_text()
            continue
        lines = sorted(path.read_text().splitlines())
        assert lines == sorted([f"out: job-{n}", f"err: job-{n}", f"child: job-{n}"]), lines
