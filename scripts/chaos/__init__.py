"""Chaos test of dtq: supervisors, workers and Redis killed while 10,000 jobs run (see scripts/chaos.py)."""
