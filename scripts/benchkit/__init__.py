"""Shared code of scripts/bench-compare (and its alias scripts/bench-memcaslap):
starting the targets, driving the two load generators, watching the host for
load we did not make, and summarising rounds into ratios with their spread.

Nothing here imports a third-party package: the scripts run with the system
python3. Only plots.py needs matplotlib, and it runs in .venv (see
Benchmarks/requirements.txt).
"""
