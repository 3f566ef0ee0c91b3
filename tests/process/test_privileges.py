"""--user/--group: workers run without root; the supervisor refuses names that do not exist."""

from __future__ import annotations

import os
import pwd
import signal

import pytest
from waiting import wait_until

pytestmark = [pytest.mark.process,
              pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")]


def test_workers_run_as_the_given_user(start_supervisor, queue):
    nobody = pwd.getpwnam("nobody")
    job_id = queue.enqueue("whoami", {})
    start_supervisor("--workers", "1", "--user", "nobody", plugins=("WhoAmI",))
    seen = queue.result(job_id, timeout=15)
    assert seen == {"uid": nobody.pw_uid, "gid": nobody.pw_gid, "groups": []}


def test_workers_of_an_unprivileged_user_still_die_with_their_supervisor(start_supervisor, queue):
    queue.enqueue("sleep", {"seconds": 100})
    sup = start_supervisor("--workers", "1", "--user", "nobody", plugins=("Sleep",))
    wait_until(lambda: queue.stats()["running"] == 1, timeout=10, message="running")
    sup.descendants()
    sup.signal(signal.SIGKILL)
    wait_until(lambda: sup.alive_leftovers() == [], timeout=5, message="workers gone")


def test_unknown_user_is_a_clear_error(start_supervisor):
    sup = start_supervisor("--user", "no-such-user-here")
    assert sup.wait(15) == 2
    assert "--user no-such-user-here: no such user" in sup.output()
