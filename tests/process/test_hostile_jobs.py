"""Hostile jobs are contained and reported; the supervisor and the next job carry on."""

from __future__ import annotations

import pytest
from supervisor_proc import is_fork_server, running
from waiting import wait_until

from dtq import JobFailed

pytestmark = pytest.mark.process

HOSTILE = ("Noop", "ForkBomb", "FillDisk", "ClosePipes", "Garbage", "Chatty", "OwnHandlers")


def next_job_runs(queue) -> None:
    assert queue.result(queue.enqueue("noop", {"after": True}), timeout=15)["echo"] == {"after": True}


def test_fork_bomb_is_killed_with_its_whole_group(start_supervisor, queue):
    job_id = queue.enqueue("fork_bomb", {"children": 150}, timeout=3, max_attempts=1)
    sup = start_supervisor("--workers", "1", plugins=HOSTILE)
    wait_until(lambda: len(sup.descendants()) > 100, timeout=15, message="the bomb went off")
    with pytest.raises(JobFailed, match="timeout after 3 s"):
        queue.result(job_id, timeout=20)

    def bomb_gone() -> bool:
        return len([p for p in sup.descendants() if running(p) and not is_fork_server(p)]) <= 1
    wait_until(bomb_gone, timeout=10, message="every bomb process killed")
    next_job_runs(queue)


def test_file_size_limit_stops_a_job_filling_the_disk(start_supervisor, queue, tmp_path):
    job_id = queue.enqueue("fill_disk", {"dir": str(tmp_path), "mib": 500}, max_attempts=1)
    start_supervisor("--workers", "1", "--max-file-size", "20M", plugins=HOSTILE)
    with pytest.raises(JobFailed) as err:
        queue.result(job_id, timeout=20)
    assert "file size limit" in err.value.reason
    assert all(f.stat().st_size <= 20 * 2**20 for f in tmp_path.iterdir())
    next_job_runs(queue)


def test_a_job_that_closes_its_pipes_is_reported(start_supervisor, queue):
    job_id = queue.enqueue("close_pipes", {}, max_attempts=1)
    start_supervisor("--workers", "1", plugins=HOSTILE)
    with pytest.raises(JobFailed) as err:
        queue.result(job_id, timeout=15)
    assert "lost its pipe" in err.value.reason
    next_job_runs(queue)


def test_garbage_on_the_pipe_kills_the_worker_with_a_protocol_error(start_supervisor, queue):
    job_id = queue.enqueue("garbage", {"seconds": 30}, max_attempts=1)
    start_supervisor("--workers", "1", plugins=HOSTILE)
    with pytest.raises(JobFailed, match="protocol error: worker wrote garbage"):
        queue.result(job_id, timeout=15)
    next_job_runs(queue)


def test_megabytes_on_stdout_do_not_disturb_anything(start_supervisor, queue):
    job_id = queue.enqueue("chatty", {"mib": 20})
    sup = start_supervisor("--workers", "1", plugins=HOSTILE)
    assert queue.result(job_id, timeout=30) == {"printed_mib": 20}
    next_job_runs(queue)
    assert sup.proc.poll() is None


def test_own_signal_handlers_do_not_save_a_job_from_its_timeout(start_supervisor, queue):
    job_id = queue.enqueue("own_handlers", {}, timeout=1, max_attempts=1)
    start_supervisor("--workers", "1", plugins=HOSTILE)
    with pytest.raises(JobFailed, match="timeout after 1 s"):
        queue.result(job_id, timeout=15)
    next_job_runs(queue)
