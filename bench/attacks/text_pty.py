"""Raw ESC / C1 / U+202E reaching a terminal from `bgjobctl logs ID`. cwd, PYTHONPATH = a checkout."""

import os
import pty
import select
import subprocess
import sys
import tempfile
from pathlib import Path

from bgjobs.model import JobSpec
from tests.support.workspace import Workspace

ws = Workspace(Path(tempfile.mkdtemp(prefix="measure-")))
try:
    ws.write_config({"allowed_jobs": {"Controls": ["handle"]}})
    ws.start_daemon()
    client = ws.client()
    jid = client.submit([JobSpec(class_name="Controls", method="handle")]).ids[0]
    client.wait(jid, 20)
    leader, follower = pty.openpty()
    p = subprocess.Popen(
        [sys.executable, "-m", "bgjobctl", "logs", str(jid)],
        cwd=ws.root,
        env=ws.env,
        stdout=follower,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    data = b""
    while select.select([leader], [], [], 10)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    p.wait(10)
    text = data.decode("utf-8", "replace")
    print(
        f"bgjobctl logs {jid} on a pty: raw ESC {text.count(chr(27))}, raw U+009B {text.count(chr(0x9B))}, "
        f"raw U+202E {text.count(chr(0x202E))}: {text.strip()!r}"
    )
finally:
    ws.close()
