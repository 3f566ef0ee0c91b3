"""What `dtq status` prints for attempts and operator notes."""

from __future__ import annotations

from dtq.cli.producer import format_status
from dtq.engine.base import JobStatus


def test_attempts_and_notes_read_differently():
    status = JobStatus(id="j1", queue="default", state="done", plugin="p", attempt=2, result=[1],
                       history=[{"attempt": 1, "wall": 1.5, "cpu": 1.25, "peak_rss": 2 * 2**20,
                                 "reason": "exit code 3"},
                                {"event": "retried", "reason": "retried by operator", "attempt": 1},
                                {"attempt": 2, "wall": 0.5, "cpu": 0.25, "peak_rss": 2**20},
                                {"attempt": 3, "wall": 0.001, "cpu": 0.001, "peak_rss": 0}])
    text = format_status(status)
    assert "  attempt 1: wall 1.500 s, cpu 1.250 s, peak 2.0 MiB - exit code 3" in text
    assert "  note: retried by operator" in text
    assert "  attempt 2: wall 0.500 s, cpu 0.250 s, peak 1.0 MiB - done" in text
    assert "  attempt 3: wall 0.001 s, cpu 0.001 s, peak not measured - done" in text
    assert "result: [1]" in text
