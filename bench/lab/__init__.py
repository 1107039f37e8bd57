"""The lab: many hosts, partitions, churn and client restarts, on one machine.

    python -m bench.lab [throughput] [partition] [churn] [restart] [isolation] [--short] [--keep] [-v]

As root it makes a network namespace for the client and one per host (``net.py``), links each
host to the client's namespace with a veth pair, starts ``pirate-worker
bench.lab.procs:LabProcedures`` processes inside the hosts, runs the scenarios
(``scenarios.py``; the first four by default) with the client in its own namespace, prints one line of figures and a
verdict per scenario and a summary, and removes every namespace and process on the way out:
at the end, on a failure, on Ctrl-C, SIGTERM or SIGHUP, and (for a run that was SIGKILLed) at
the start of the next run. Without root or namespaces it prints ``lab skipped: <why>`` and
exits 0. Exit 1 if a scenario failed, 130 if interrupted.
"""
