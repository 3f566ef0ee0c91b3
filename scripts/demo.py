"""The main job, end to end: Redis, a supervisor, montage jobs over the sample images, a clean stop.

Uses the Redis at $DTQ_REDIS_URL (or localhost:6379) when it answers, else starts a
private redis-server on a free port and stops it at the end. Jobs go to their own
queue ("demo") so nothing else on that Redis is touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "scripts" / "demo" / "images"
OUT = REPO / "out" / "demo"
QUEUE = "demo"


def reachable(url: str) -> bool:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping()
        return True
    except (redis.RedisError, OSError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_redis() -> tuple[str, subprocess.Popen[bytes]]:
    if shutil.which("redis-server") is None:
        print("redis-server is missing: installing Debian's package", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True)
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", tempfile.mkdtemp(prefix="dtq-demo-")],
                            stdout=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        if reachable(url):
            return url, proc
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("could not start a private redis-server")


def dtq(url: str, *args: str, **kw) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "dtq", "--redis-url", url, *args], cwd=REPO, **kw)


def main() -> int:
    url = os.environ.get("DTQ_REDIS_URL") or "redis://localhost:6379/0"
    server = None
    if reachable(url):
        print(f"using the Redis at {url}")
    else:
        url, server = private_redis()
        print(f"no Redis answered; started a private one at {url}")
    OUT.mkdir(parents=True, exist_ok=True)
    supervisor = dtq(url, "--log-level", "warning", "supervise", "--workers", "auto",
                     "--queues", QUEUE, "--name", f"demo-{socket.gethostname()}-{os.getpid()}",
                     "--allow-path", str(IMAGES), "--allow-path", str(OUT), "--timeout", "120",
                     start_new_session=True)
    try:
        montage = dtq(url, "montage", str(IMAGES / "photos"), str(IMAGES / "science"),
                      "-o", str(OUT), "--queue", QUEUE, "--format", "jpeg", "--wait")
        code = montage.wait(600)
        print(f"contact sheets are in {OUT}")
    finally:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(supervisor.pid, signal.SIGKILL)
        if server is not None:
            server.terminate()
            server.wait(10)
    print("supervisor stopped" + (", private Redis stopped" if server else ""))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
