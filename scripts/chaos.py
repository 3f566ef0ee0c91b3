"""Chaos test: N ledger jobs on 3+ supervisors while workers, supervisors and Redis are killed.

While the jobs run, at random intervals and one at a time: SIGKILL a worker; SIGKILL a
supervisor's process group and start it again (alternately the same name and a new one);
SIGSTOP a supervisor for 1.3-2 leases, then SIGCONT (a stale holder); restart Redis
(SIGKILL or SIGTERM, AOF with appendfsync always, same port). Every action is logged with
its window. At the end the job hashes and the plugin's ledger are checked: nothing lost or
held, no stale result, every duplicate run explained by an action window, and recovery
after a supervisor kill or stop within lease x 1.5 + slack. Exit 1 on any failure.

Usage: .venv/bin/python scripts/chaos.py [--jobs 10000] [--max-seconds 300] [--seed N]
       [--lease 2] [--supervisors 3] [--workers 2] [--json report.json] [--quiet]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.chaos.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
