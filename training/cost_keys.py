"""The names of the cost metrics the training loop adds to every epoch's row (training/costs.py
measures them; docs/COSTS.md says how). A module without torch, so the sweep's report,
scheduler and search can name them without importing torch."""

# Counted, not timed: the same on every machine and under any load, so they may take part in
# exact comparisons (reproducible mode, tests/helpers.py results_only).
LOAD_INDEPENDENT = ("params", "flops")
# Timed or sampled from the process: they change with the machine and with its load, so every
# exact comparison of metrics leaves them out.
LOAD_DEPENDENT = ("latency_ms", "latency_eval_ms", "latency_ms_spread", "peak_mem_mb",
                  "cpu_load")
COST_KEYS = LOAD_INDEPENDENT + LOAD_DEPENDENT
