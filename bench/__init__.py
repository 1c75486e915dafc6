"""Benchmarks of the gateway beside its baselines and its peers (issues 5 and 13).

`./scripts/bench` runs every figure; `./scripts/bench --quick` a smaller run that fits in a
minute. Each figure is measured against its baseline in the same run, on this machine, with
all traffic on 127.0.0.1. Results go to bench/results/ (latest.md and PNG plots).
"""
