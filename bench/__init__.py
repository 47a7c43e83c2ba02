"""botkit's benchmarks: `python -m bench` (or `botkit bench`) prints a table and writes JSON.

Every figure is a ratio measured in one run, on this machine, against a baseline measured in
the same run. No timing goal lives in the unit tests.
"""
