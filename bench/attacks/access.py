"""Measure finding 6 (other users on the host) against one checkout; run as root:

    PYTHONPATH=CHECKOUT .venv/bin/python bench/attacks/access.py CHECKOUT

Prints one line per figure. Uses only what both the old and the new code have.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import tomli_w

CHECKOUT = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(CHECKOUT))
sys.path.insert(0, str(CHECKOUT / "tests"))

import contextlib

from bgjobs.protocol import PROTOCOL_VERSION, Error, FrameEncoder, Hello, decode_reply

TOKEN = "measure-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def as_nobody(action):  # type: ignore[no-untyped-def]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
        try:
            text = str(action())
        except Exception as exc:  # noqa: BLE001
            text = f"raised {exc!r}"
        os.write(w, text.encode())
        os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return out.decode()


def hello(path: Path) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        try:
            sock.connect(str(path))
        except OSError as exc:
            return f"connect: {type(exc).__name__}"
        try:  # a refused peer may be answered and closed before Hello is sent
            sock.sendall(FrameEncoder().encode(Hello(version=PROTOCOL_VERSION, rid=1)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
            chunk = sock.recv(65536)
            if not chunk:
                return "closed"
            data += chunk
        reply = decode_reply(data[4:])
        return f"Error:{reply.code.value}" if isinstance(reply, Error) else type(reply).__name__


class Daemon:
    def __init__(self, root: Path, settings: dict) -> None:  # type: ignore[type-arg]
        self.config = root / "bgjobs.toml"
        self.config.write_bytes(tomli_w.dumps(settings).encode())
        self.socket = Path(settings["daemon"]["socket"])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bgjobd", "--config", str(self.config)],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(CHECKOUT), "BGJOBS_CONFIG": str(self.config)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while hello(self.socket) != "Welcome":
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("bgjobd did not start")
            time.sleep(0.05)
        dashboard = settings.get("dashboard", {})
        while dashboard.get("enabled"):
            try:
                http_status(f"http://{dashboard['listen']}/login")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the dashboard did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def http_status(url: str, method: str = "GET", headers: dict | None = None, data=None, opener=None):  # type: ignore[no-untyped-def]
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with (opener or urllib.request.build_opener(NoRedirect())).open(request, timeout=10) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def main() -> None:
    os.umask(0o022)
    base = Path(tempfile.mkdtemp(prefix="bgj-m-", dir="/tmp"))
    base.chmod(0o711)
    try:
        shared = base / "shared"
        shared.mkdir()
        shared.chmod(0o1777)
        port = free_port()
        (base / "jobs").mkdir()
        (base / "jobs" / "__init__.py").write_text(
            "class Chatty:\n    def fail(self, text):\n        print(text)\n"
            "        raise RuntimeError(text)\n"
        )
        settings = {
            "allowed_jobs": {"Chatty": ["fail"]},
            "daemon": {"socket": str(shared / "x.sock"), "storage": str(base / "storage")},
            "dashboard": {"enabled": True, "listen": f"127.0.0.1:{port}"},
        }
        daemon = Daemon(base, settings)
        print(
            f"sticky socket directory mode after start: {stat.S_IMODE(shared.stat().st_mode):04o}"
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bgjobctl",
                "--config",
                str(daemon.config),
                "submit",
                "Chatty",
                "fail",
                "secret-4711",
                "--wait",
            ],
            env={**os.environ, "PYTHONPATH": str(CHECKOUT)},
            capture_output=True,
            check=False,
        )
        files = [p for p in (base / "storage").rglob("*") if p.is_file()]
        loose = [p for p in files if stat.S_IMODE(p.stat().st_mode) & 0o077]
        print(f"files under storage open to group/others: {len(loose)} of {len(files)}")

        def readable() -> str:
            found = []
            for p in files:
                with contextlib.suppress(OSError):
                    found.append((p.name, "secret-4711" in p.read_bytes().decode(errors="replace")))
            return repr(found)

        seen = eval(as_nobody(readable))  # our own repr
        print(
            f"files nobody can read: {len(seen)}, of which hold the secret: "
            f"{sum(1 for _, s in seen if s)} ({', '.join(n for n, s in seen if s)})"
        )
        url = f"http://127.0.0.1:{port}"
        print(f"no [dashboard] token: anonymous GET /api/jobs: {http_status(url + '/api/jobs')[0]}")
        daemon.stop()
        settings["dashboard"]["token"] = TOKEN
        daemon = Daemon(base, settings)

        # Guess rate on the login form (with its CSRF token, as a browser would).
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())
        form = http_status(url + "/login", headers={"Accept": "text/html"}, opener=opener)[1]
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form)[1]  # type: ignore[index]
        statuses: dict[int, int] = {}
        started = time.perf_counter()
        for n in range(100):
            body = urllib.parse.urlencode(
                {"token": f"wrong-{n:04d}-guess-guess", "csrf_token": csrf}
            )
            code = http_status(
                url + "/login",
                "POST",
                {"Content-Type": "application/x-www-form-urlencoded"},
                body.encode(),
                opener,
            )[0]
            statuses[code] = statuses.get(code, 0) + 1
        elapsed = time.perf_counter() - started
        print(f"100 wrong login guesses: statuses {statuses}, {100 / elapsed:.0f} guesses/s")
        daemon.stop()

        # Session after logout and after a restart (fresh limiter: restarted daemon).
        daemon = Daemon(base, settings)
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())
        form = http_status(url + "/login", headers={"Accept": "text/html"}, opener=opener)[1]
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form)[1]  # type: ignore[index]
        body = urllib.parse.urlencode({"token": TOKEN, "csrf_token": csrf}).encode()
        http_status(
            url + "/login",
            "POST",
            {"Content-Type": "application/x-www-form-urlencoded"},
            body,
            opener,
        )
        auth = next(c for c in jar if c.name.startswith("bgjobs_auth"))
        cookie = f"{auth.name}={auth.value}"
        http_status(
            url + "/logout",
            "POST",
            {"Content-Type": "application/x-www-form-urlencoded"},
            urllib.parse.urlencode({"csrf_token": csrf}).encode(),
            opener,
        )
        print(
            f"GET /api/stats with the cookie after logout: {http_status(url + '/api/stats', headers={'Cookie': cookie})[0]}"
        )
        daemon.stop()
        daemon = Daemon(base, settings)
        print(
            f"GET /api/stats with the cookie after a restart: {http_status(url + '/api/stats', headers={'Cookie': cookie})[0]}"
        )
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        print(
            f"Host 127.0.0.1:PORT@evil.example: {http_status(url + '/api/stats', headers={**bearer, 'Host': f'127.0.0.1:{port}@evil.example'})[0]}"
        )
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.putrequest("GET", "http://evil.example/api/stats", skip_host=True)
        connection.putheader("Host", f"127.0.0.1:{port}")
        connection.putheader("Authorization", f"Bearer {TOKEN}")
        connection.endheaders()
        print(
            f"GET http://evil.example/api/stats (absolute form): {connection.getresponse().status}"
        )
        connection.close()
        daemon.stop()

        # allowed_uids: nobody over the socket, in a directory nobody can traverse.
        settings["daemon"]["socket"] = str(base / "run" / "d.sock")
        settings["daemon"]["allowed_uids"] = [65534]
        settings["dashboard"] = {"enabled": False}
        daemon = Daemon(base, settings)
        print(
            f"allowed_uids = [65534]: nobody's Hello gets {as_nobody(lambda: hello(daemon.socket))}"
        )
        daemon.stop()
        settings["daemon"]["allowed_uids"] = []
        daemon = Daemon(base, settings)
        (base / "run").chmod(0o711)
        daemon.socket.chmod(0o666)
        print(
            f"not allowed, socket opened by hand: nobody's Hello gets {as_nobody(lambda: hello(daemon.socket))}"
        )
        daemon.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
