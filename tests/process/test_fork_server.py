"""Workers forked by the fork server and adopted by the supervisor (dtq/supervisor/forkserver.py)."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
from supervisor_proc import running
from waiting import wait_until

from dtq import JobFailed
from dtq.supervisor.forkserver import ForkServer, ForkServerError, server_config
from dtq.supervisor.settings import SupervisorSettings
from dtq.supervisor.started import StartedCounter

pytestmark = pytest.mark.process


def one_server(sup) -> int:
    return wait_until(lambda: len(sup.fork_server_pids()) == 1 and sup.fork_server_pids()[0],
                      timeout=10, message="one fork server")


def test_workers_come_from_the_fork_server_and_belong_to_the_supervisor(start_supervisor, queue):
    sup = start_supervisor("--workers", "2")
    wait_until(lambda: len(sup.worker_pids()) == 2, timeout=10, message="two workers")
    server = one_server(sup)
    assert all(psutil.Process(pid).ppid() == sup.pid for pid in sup.worker_pids())
    assert psutil.Process(server).children() == []  # the middle processes are gone
    assert psutil.Process(server).cmdline()[0] == "dtq fork server"
    result = queue.result(queue.enqueue("noop", {"x": 1}), timeout=10)
    assert result["echo"] == {"x": 1} and result["pid"] in sup.worker_pids()


def test_no_fork_server_forks_from_the_supervisor(start_supervisor, queue):
    sup = start_supervisor("--workers", "1", "--no-fork-server")
    wait_until(lambda: len(sup.worker_pids()) == 1, timeout=10, message="one worker")
    assert sup.fork_server_pids() == []
    assert queue.result(queue.enqueue("noop", {}), timeout=10)["echo"] == {}


def test_a_killed_fork_server_is_replaced_and_deaths_are_still_decoded(start_supervisor, queue):
    sup = start_supervisor("--workers", "1", plugins=("Noop", "Exit", "Segfault"))
    wait_until(lambda: len(sup.worker_pids()) == 1, timeout=10, message="one worker")
    first = one_server(sup)
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not running(first), timeout=10, message="the server gone")
    assert queue.result(queue.enqueue("noop", {}), timeout=10)["echo"] == {}  # its worker serves on
    with pytest.raises(JobFailed, match="exit code 3"):
        queue.result(queue.enqueue("exit", {"code": 3}, max_attempts=1), timeout=15)
    with pytest.raises(JobFailed, match="killed by SIGSEGV"):
        queue.result(queue.enqueue("segfault", {}, max_attempts=1), timeout=15)
    assert queue.result(queue.enqueue("noop", {}), timeout=15)["echo"] == {}
    assert one_server(sup) != first


def test_sigkill_of_the_supervisor_takes_server_and_workers_along(start_supervisor, queue):
    queue.enqueue("sleep", {"seconds": 30})
    sup = start_supervisor("--workers", "2", plugins=("Sleep",))
    wait_until(lambda: queue.stats()["running"] == 1, timeout=10, message="a job running")
    pids = [one_server(sup), *sup.worker_pids()]
    assert len(pids) == 3
    os.kill(sup.pid, signal.SIGKILL)
    wait_until(lambda: not any(running(pid) for pid in pids), timeout=10, message="all gone")


def test_sighup_starts_a_fresh_server(start_supervisor, queue):
    sup = start_supervisor("--workers", "1")
    first = one_server(sup)
    sup.signal(signal.SIGHUP)
    wait_until(lambda: sup.fork_server_pids() not in ([], [first]), timeout=10, message="a new server")
    wait_until(lambda: not running(first), timeout=10, message="the old server gone")
    assert queue.result(queue.enqueue("noop", {}), timeout=10)["echo"] == {}


def test_a_server_that_cannot_load_the_plugins_says_why():
    settings = SupervisorSettings(plugins=["no_such_module_here:Plugin"], entry_points=False)
    server = ForkServer(server_config(settings), {"anything"})
    with pytest.raises(ForkServerError, match="no_such_module_here"):
        server.start()
    assert server.pid is None and server.sock is None


def test_a_server_that_loads_other_plugins_is_refused():
    settings = SupervisorSettings(plugins=["testplugins:Noop"], entry_points=False)
    server = ForkServer(server_config(settings), {"noop", "sleep"})
    with pytest.raises(ForkServerError, match="other plugins"):
        server.start()
    assert server.pid is None


def test_a_passable_counter_is_shared_through_its_descriptor():
    counter = StartedCounter(passable=True)
    worker_side = StartedCounter.attach(os.dup(counter.fd))
    counter.drop_fd()
    worker_side.increment()
    worker_side.increment()
    assert counter.value == 2
    worker_side.close()
    counter.close()


HELPED = """
from dtq.plugin import Plugin
from hup_helper import VERSION

class Helped(Plugin):
    name = "helped"

    def process(self, data, ctx):
        return VERSION
"""


def test_sighup_workers_run_edited_helper_modules_too(start_supervisor, queue, tmp_path, monkeypatch):
    """A reload in the supervisor re-runs only the plugin's own module; the fresh server
    imports everything again, so the workers see an edit in a module the plugin imports."""
    (tmp_path / "hup_helped.py").write_text(HELPED)
    (tmp_path / "hup_helper.py").write_text("VERSION = 'v1'\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # a same-second edit must not reuse .pyc
    sup = start_supervisor("--workers", "1", "--plugin", "hup_helped:Helped", plugins=())
    assert queue.result(queue.enqueue("helped", {}), timeout=10) == "v1"
    (tmp_path / "hup_helper.py").write_text("VERSION = 'v2'\n")
    sup.signal(signal.SIGHUP)
    wait_until(lambda: "plugins reloaded" in sup.output(), timeout=10, message="reloaded")
    assert queue.result(queue.enqueue("helped", {}), timeout=10) == "v2"


GONE = """
from dtq.plugin import Plugin

class Gone(Plugin):
    name = "gone"

    def process(self, data, ctx):
        return "served"
"""


def test_a_server_that_cannot_restart_leaves_the_supervisor_forking(start_supervisor, queue, tmp_path,
                                                                     monkeypatch):
    (tmp_path / "soon_gone.py").write_text(GONE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    sup = start_supervisor("--workers", "1", "--plugin", "soon_gone:Gone", plugins=())
    assert queue.result(queue.enqueue("gone", {}), timeout=10) == "served"
    (tmp_path / "soon_gone.py").unlink()  # a new server cannot import the plugin any more
    server, [worker] = one_server(sup), sup.worker_pids()
    os.kill(server, signal.SIGKILL)
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: "forking workers from the supervisor from now on" in sup.output(), timeout=20,
               message="the fallback")
    assert "soon_gone" in sup.output()  # the log says why the server would not start
    assert queue.result(queue.enqueue("gone", {}), timeout=10) == "served"
    assert sup.fork_server_pids() == [] and len(sup.worker_pids()) == 1
