"""The fork server: a small interpreter, started by the supervisor, that forks its workers.

Why not fork workers from the supervisor itself: a worker then starts as a copy of
a long-running process (its Redis client, its heap after hours of bookkeeping, the
memory layout drawn when it started). On the AMD EPYC VMs this project is measured
on, a pure-Python loop ran 6-8 % slower in workers forked that way than in the
children of a `multiprocessing.Pool` in a fresh interpreter (docs/benchmarks.md).
Workers forked from a fresh interpreter too, one that has imported only the plugins
and the worker code, ran the loop as fast. It is the idea of multiprocessing's
"forkserver" start method.

The supervisor still owns its workers: it is their "child subreaper", and the server
forks each one through a short-lived middle process that exits at once, so the worker
is re-parented to the supervisor. The supervisor reaps it, reads its exit status and
kills its process group exactly as if it had forked it; the worker sets its
parent-death signal only once re-parented, so it dies with the supervisor, not with
the middle process.

Protocol, one message per packet on a SOCK_SEQPACKET pair: the supervisor sends the
settings (JSON), the server answers ``ready NAMES`` or ``fail MESSAGE``; then for every
worker the supervisor sends ``fork`` with three descriptors (the worker's two pipe ends
and its started counter) and gets ``pid N`` or ``err ERRNO``. End of file stops the server.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from dtq.plugin import Plugin
from dtq.supervisor.exits import EXIT_START_FAILED
from dtq.supervisor.proctitle import set_title
from dtq.supervisor.settings import SupervisorSettings
from dtq.supervisor.worker import close_inherited, die_with_parent, prctl, run_worker

log = logging.getLogger("dtq.supervisor")

_PR_SET_CHILD_SUBREAPER = 36
START_SECONDS = 60.0  # plugin imports may be slow (Pillow, numpy, a model's weights)
# A restart (the server died, or SIGHUP) happens while the supervisor holds leases that
# its loop must renew: it may not block the loop for longer than this.
RESTART_SECONDS = 10.0
REPLY_SECONDS = 10.0  # one fork takes milliseconds; a server this slow is replaced
REPARENT_SECONDS = 5.0


class ForkServerError(Exception):
    """The fork server could not be started (the supervisor then forks workers itself)."""


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux 3.4+)."""
    return prctl(_PR_SET_CHILD_SUBREAPER, 1) == 0


def server_config(settings: SupervisorSettings) -> dict[str, Any]:
    """What the server needs to load the same plugins and start workers the same way."""
    root = logging.getLogger()
    log_format = None
    if root.handlers:
        from dtq.cli.logs import JsonFormatter

        log_format = "json" if isinstance(root.handlers[0].formatter, JsonFormatter) else "text"
    return {"supervisor_pid": os.getpid(), "plugins": list(settings.plugins),
            "entry_points": settings.entry_points, "allow_paths": [str(p) for p in settings.allow_paths],
            "plugin_options": settings.plugin_options, "max_file_size": settings.max_file_size,
            "user": settings.user, "group": settings.group,
            "log_level": logging.getLevelName(root.level), "log_format": log_format,
            "sys_path": sys.path}  # plugins found through a path the supervisor added


def start_fork_server(settings: SupervisorSettings, plugins: Mapping[str, Plugin],
                      timeout: float = START_SECONDS) -> ForkServer | None:
    """A running fork server for these plugins, or None (with a warning saying why) when
    the supervisor has to fork its workers itself."""
    if not become_subreaper():
        log.warning("cannot adopt workers (no PR_SET_CHILD_SUBREAPER): forking them from the "
                    "supervisor")
        return None
    server = ForkServer(server_config(settings), set(plugins))
    try:
        server.start(timeout)
    except ForkServerError as exc:
        log.warning("%s: forking workers from the supervisor", exc)
        return None
    return server


class ForkServer:
    """The supervisor's side: start the server, ask it for workers, stop it."""

    def __init__(self, config: dict[str, Any], plugin_names: set[str]) -> None:
        self.config = config
        self.plugin_names = plugin_names
        self.pid: int | None = None
        self.sock: socket.socket | None = None

    def start(self, timeout: float = START_SECONDS) -> None:
        """Start the server and wait until it has loaded the plugins; raises ForkServerError."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            theirs.set_inheritable(True)
            argv = [sys.executable, "-m", "dtq.supervisor.forkserver", str(theirs.fileno())]
            self.pid = os.posix_spawn(sys.executable, argv, dict(os.environ))
        except OSError as exc:
            ours.close()
            raise ForkServerError(f"could not start the fork server: {exc}") from exc
        finally:
            theirs.close()
        self.sock = ours
        try:
            ours.settimeout(timeout)
            ours.send(json.dumps(self.config).encode())
            reply = ours.recv(1 << 16).decode(errors="replace")
        except OSError as exc:
            self.close()
            raise ForkServerError(f"the fork server did not start: {exc}") from exc
        word, _, rest = reply.partition(" ")
        if word == "ready" and set(json.loads(rest)) == self.plugin_names:
            return
        self.close()
        if word == "ready":
            raise ForkServerError(f"the fork server loaded other plugins ({rest}) than the "
                                  f"supervisor ({','.join(sorted(self.plugin_names))})")
        raise ForkServerError(f"the fork server failed: {rest or 'it exited before saying why'}")

    def fork(self, fd_in: int, fd_out: int, counter_fd: int) -> int:
        """A new worker's pid. Raises OSError (as os.fork does) when no worker could be
        started; a server that died or hangs is replaced on the next call, and
        ForkServerError says that the replacement would not start."""
        if self.sock is None:
            self.start(RESTART_SECONDS)
        assert self.sock is not None
        try:
            self.sock.settimeout(REPLY_SECONDS)
            socket.send_fds(self.sock, [b"fork"], [fd_in, fd_out, counter_fd])
            reply = self.sock.recv(256).decode(errors="replace")
        except OSError as exc:
            self.close()
            raise OSError(errno.EAGAIN, f"the fork server did not answer: {exc}") from None
        word, _, rest = reply.partition(" ")
        if word == "pid":
            return int(rest)
        if word == "err":
            code = int(rest)
            raise OSError(code, os.strerror(code))
        self.close()
        raise OSError(errno.EAGAIN, "the fork server went away")

    def close(self) -> None:
        """Stop the server (end of file on its socket) and reap it unless the supervisor's
        own reaping got there first."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        pid, self.pid = self.pid, None
        if pid is None:
            return
        deadline = time.monotonic() + 2.0
        try:
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.005)
        except (ChildProcessError, ProcessLookupError):
            pass


# --- the server process ------------------------------------------------------------------
def main(fd: int) -> NoReturn:
    sock = socket.socket(fileno=fd)
    close_inherited((fd,))
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)  # the supervisor decides; workers reset them
    try:
        config = json.loads(sock.recv(1 << 20))
    except (OSError, ValueError):
        os._exit(EXIT_START_FAILED)
    die_with_parent(config["supervisor_pid"])
    sys.path[:] = config["sys_path"]
    if config["log_format"]:
        from dtq.cli.logs import setup_logging

        setup_logging(config["log_level"], config["log_format"])
    from dtq.plugin_loader import ENTRY_POINT_GROUP, PluginError, load_plugins
    from dtq.supervisor.settings import drop_privileges, plugin_config

    settings = SupervisorSettings(plugins=config["plugins"], entry_points=config["entry_points"],
                                  allow_paths=[Path(p) for p in config["allow_paths"]],
                                  plugin_options=config["plugin_options"],
                                  max_file_size=config["max_file_size"], user=config["user"],
                                  group=config["group"])
    try:
        plugins = load_plugins(settings.plugins, config=plugin_config(settings),
                               entry_point_group=ENTRY_POINT_GROUP if settings.entry_points else None)
    except PluginError as exc:
        sock.send(f"fail {exc}".encode())
        os._exit(EXIT_START_FAILED)
    set_title("dtq fork server")
    sock.send(f"ready {json.dumps(sorted(plugins))}".encode())
    child_init = drop_privileges(settings)
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 64, 3)
        if not message:
            os._exit(0)
        try:
            reply = _fork_worker(fds, plugins, config["supervisor_pid"], settings.max_file_size,
                                 child_init)
        finally:
            for received in fds:
                os.close(received)
        sock.send(reply)


def _fork_worker(fds: list[int], plugins: Mapping[str, Plugin], supervisor_pid: int,
                 max_file_size: int | None, child_init: Callable[[], None] | None) -> bytes:
    """Fork a middle process that forks the worker and exits, so that the worker is
    re-parented to the supervisor (its subreaper). The middle one reports the pid."""
    if len(fds) != 3:
        return b"err %d" % errno.EINVAL
    read_end, write_end = os.pipe()
    try:
        middle = os.fork()
    except OSError as exc:
        os.close(read_end)
        os.close(write_end)
        return b"err %d" % (exc.errno or errno.EAGAIN)
    if middle == 0:  # pragma: no cover - runs in the middle process
        try:
            worker = os.fork()
        except OSError as exc:
            os.write(write_end, b"-%d" % (exc.errno or errno.EAGAIN))
            os._exit(0)
        if worker == 0:
            set_title("dtq worker: starting")  # not mistaken for the server once adopted
            _await_reparenting(supervisor_pid)
            fd_in, fd_out, counter_fd = fds
            run_worker(fd_in, fd_out, plugins, supervisor_pid, counter_fd, max_file_size, child_init)
        os.write(write_end, b"%d" % worker)
        os._exit(0)
    os.close(write_end)
    answer = b""
    while chunk := os.read(read_end, 64):
        answer += chunk
    os.close(read_end)
    os.waitpid(middle, 0)
    if not answer:
        return b"err %d" % errno.EIO
    number = int(answer)
    return b"err %d" % -number if number < 0 else b"pid %d" % number


def _await_reparenting(supervisor_pid: int) -> None:  # pragma: no cover - in the worker
    """Wait until the middle process has exited and the supervisor adopted us; a worker
    whose supervisor is gone meanwhile has no one to work for."""
    deadline = time.monotonic() + REPARENT_SECONDS
    while (parent := os.getppid()) != supervisor_pid:
        if parent == 1 or time.monotonic() > deadline:
            os._exit(EXIT_START_FAILED)
        time.sleep(0.0001)


if __name__ == "__main__":
    main(int(sys.argv[1]))
