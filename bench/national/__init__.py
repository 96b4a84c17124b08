"""National scale: a simulated school year for slices of England, for sizing a deployment.

Run from the repository root::

    .venv/bin/python -m bench.national --teams 30 --teams 60 --teams 120

England has about 600 MHSTs serving 10,000 schools, with about 1,000,000 referrals a year.
A slice of ``--teams N`` teams is that year scaled down: N teams, 12 to 21 schools each
(16.5 on average: 9,900 at 600 teams), and N x 1,667 referrals arriving over the year from
1 September (:class:`mhst_tracker.simulate.Shape`: each team's Monday-in-term rate is set so
that its year of weekdays, weekends and school holidays brings 1,667 referrals). It starts
its own Kafka broker (12 partitions) and, for each slice:

* **history**: simulates the year into a scratch JSONL file and publishes every line on a
  fresh events topic (as :mod:`bench.bench_rebuild` does);
* **rebuild**: ``mhst-tracker rebuild`` (a process per CPU) on a clock reading the last
  simulated moment T, timed from start to exit;
* **restore**: a worker with an empty data directory restoring the rebuilt table (one
  record per referral of the year, open or not), to "Worker ready" and to its deadline
  index, and its RSS then and its peak (``VmHWM``);
* **first run**: the same worker started again on its data directory as of T, raising what
  is due then: with no alert history (a first deployment), every breach and at-risk warning
  of the year that is still true, once: read (with any the restore raised) until the
  engine's count of them has come, timed to the last; RSS then, and the peak;
* **midnight**: the same worker started again on its data directory on a clock that reaches
  the first local midnight after T once its index is ready (twice the restore time plus
  10 s later); every referral open at T is open then. The alerts detected at that midnight
  are counted and timed (timestamp appended by the broker, ``LogAppendTime``, minus the
  midnight's wall time) until none has come for 10 s; RSS after them, and the peak;
* **take-over**: two workers with ``MHST_STANDBY_REPLICAS=1`` (what the project ships)
  restore the table; one is SIGKILLed, timed until the other indexes the deadlines of the
  partitions it gained; then the killed one restarts on its data directory
  (:func:`bench.bench_takeover.kill_and_restart`);
* **store**: ``mhst-tracker db upgrade`` and ``mhst-tracker import`` of the year's file into
  a PostgreSQL server of its own, timed, then the database's size and each table's.

Figures go to ``bench/results/national.json`` (written after each slice) and the plots, each
measure against the number of teams with its least-squares line carried to 600 teams, to
``bench/results/national.png``.
"""
