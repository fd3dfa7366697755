#!/usr/bin/env python
"""Throughput of ``lenet_fast.dask.predict`` on a local distributed cluster: images per
second on 1 and on 2 worker processes (one thread each), the 70,000 MNIST digits.

    python bench/bench_dask.py [--data DIR] [--workers 1 2] [--chunk 5000] [--repeats 3]

For each worker count a ``distributed.LocalCluster`` (loopback, worker processes, one
thread each) is started; the digits are scattered to the workers first (data already on a
cluster, as a user's would be), then ``predict(...).compute()`` is timed ``--repeats``
times, the median reported; every run's labels are checked against a local
``model.predict``. A local ``model.predict`` on one thread is measured too, as the
baseline. The machine's load average is recorded with each run: on a shared machine the
wall-clock figures move with it; the workers' CPU time per run (their processes'
``time.process_time``, summed) gives images per worker CPU-second, which moves less. Results go to ``--json`` (default bench/results/dask.json).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from harness.facts import load_average, machine_facts
from harness.output import SCHEMA, default_json, write_json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("LENET_FAST_DATA"), help="MNIST folder")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--chunk", type=int, default=5000, help="digits per chunk")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", metavar="PATH", default=default_json("dask"))
    a = p.parse_args(argv)

    import dask.array as da
    from distributed import Client, LocalCluster

    import lenet_fast
    import lenet_fast.dask as ld
    from lenet_fast import LeNet5

    facts = machine_facts(threads=1)
    tr_x, _, te_x, _ = lenet_fast.load_mnist(a.data)
    x = np.concatenate([tr_x, te_x])
    model = LeNet5.pretrained()

    old = lenet_fast.get_num_threads()
    lenet_fast.set_num_threads(1)
    local = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        want = model.predict(x)
        local.append(time.perf_counter() - t0)
    lenet_fast.set_num_threads(old)
    local_seconds = statistics.median(local)
    print(
        f"local model.predict, 1 thread: median {local_seconds:.2f} s = "
        f"{len(x) / local_seconds:,.0f} images/s (runs: {', '.join(f'{s:.2f}' for s in local)} s)"
    )

    runs = []
    for n in a.workers:
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
        try:
            parts = [x[i : i + a.chunk] for i in range(0, len(x), a.chunk)]
            futures = client.scatter(parts, broadcast=False)
            dx = da.concatenate(
                [
                    da.from_delayed(f, shape=q.shape, dtype=q.dtype, meta=q[:0])
                    for f, q in zip(futures, parts)
                ]
            )
            seconds, cpu = [], []
            for _ in range(a.repeats):
                c0 = sum(client.run(time.process_time).values())
                t0 = time.perf_counter()
                got = ld.predict(model, dx).compute()
                seconds.append(time.perf_counter() - t0)
                cpu.append(sum(client.run(time.process_time).values()) - c0)
                if not np.array_equal(got, want):
                    raise SystemExit(f"{n} workers: labels differ from the local predict")
        finally:
            client.close()
            cluster.close()
        rate = len(x) / statistics.median(seconds)
        per_cpu = len(x) / statistics.median(cpu)
        print(
            f"{n} worker(s) x 1 thread: median {statistics.median(seconds):.2f} s = "
            f"{rate:,.0f} images/s (runs: {', '.join(f'{s:.2f}' for s in seconds)} s); "
            f"{per_cpu:,.0f} images per worker CPU-second"
        )
        runs.append(
            {
                "workers": n,
                "threads_per_worker": 1,
                "seconds": seconds,
                "images_per_second": rate,
                "worker_cpu_seconds": cpu,
                "images_per_worker_cpu_second": per_cpu,
                "load_average_1min_after": load_average(),
            }
        )
    write_json(
        a.json,
        {
            "schema": SCHEMA,
            "script": "bench/bench_dask.py",
            "facts": facts,
            "images": len(x),
            "chunk": a.chunk,
            "local_one_thread_seconds": local,
            "local_one_thread_images_per_second": len(x) / local_seconds,
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
