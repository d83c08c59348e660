"""What one element and one state key cost on the local runner, apart from any stage's own work.

    .venv/bin/python benchmarks/bench_state_cost.py [--elements 60000] [--repeat 3]

Each article is ~33 elements through the syndication stage's stateful steps
(one query per index bucket, one reply each) over ~32 state keys (its buckets
and its home shard): this prints what that shape costs on FnApiRunner with a
DoFn doing nothing else, so the stage's own work can be told from Beam's.
One pipeline per row, in this process, over the same elements (small
`StoredValue`s like an empty bucket's), best and median of `--repeat`
CPU-seconds divided by the elements:

- a stateless DoFn (the cost of a hop between fused DoFns);
- a stateful DoFn reading and writing a `ReadModifyWriteState` whose key
  changes with every element (as the index buckets: loaded, weighed and
  committed once per key and bundle);
- the same over one key per 32 elements (as the home shard);
- the first of those two with the in-process worker's state cache off, as
  `wirecopy run` starts the local runner (`pipelines.enrich.local_runner`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import apache_beam as beam  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import FnApiRunner, worker_handlers  # noqa: E402
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec  # noqa: E402

from wirecopy.pipelines.enrich import local_runner  # noqa: E402
from wirecopy.transforms.stage import StoredValue, StoredValueCoder, weigh_state_cheaply  # noqa: E402

ELEMENTS_PER_HOME_SHARD = 32
BEAM_STATE_CACHE_MB = worker_handlers.STATE_CACHE_SIZE_MB  # Beam's own, before `local_runner` sets it to 0


class _PassFn(beam.DoFn):
    def process(self, element):
        yield element


class _ReadWriteFn(beam.DoFn):
    STATE = ReadModifyWriteStateSpec("value", StoredValueCoder())

    def setup(self):
        weigh_state_cheaply()

    def process(self, keyed, state=beam.DoFn.StateParam(STATE)):
        stored = state.read()
        state.write(StoredValue(data=b"B\x01" + (stored.data() if stored else b"")[:64]))
        yield keyed


def beams_runner() -> FnApiRunner:
    worker_handlers.STATE_CACHE_SIZE_MB = BEAM_STATE_CACHE_MB
    return FnApiRunner()


def cpu_seconds(elements: int, step: beam.DoFn | None, keys_per: int, runner=beams_runner) -> float:
    started = time.process_time()
    with beam.Pipeline(runner=runner()) as pipeline:
        items = pipeline | beam.Create(range(elements), reshuffle=False)
        if step is None:
            passed = items | beam.Map(lambda i: i)
        else:
            keyed = items | beam.Map(lambda i: (i // keys_per, i)).with_output_types(tuple[int, int])
            passed = keyed | beam.ParDo(step)
        passed | beam.combiners.Count.Globally()
    return time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--elements", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cases = {
        "baseline: Create, a Map, Count": (None, 1, beams_runner),
        "+ a stateless DoFn": (_PassFn(), 1, beams_runner),
        "+ a stateful DoFn, a new key per element": (_ReadWriteFn(), 1, beams_runner),
        f"+ a stateful DoFn, one key per {ELEMENTS_PER_HOME_SHARD} elements": (
            _ReadWriteFn(),
            ELEMENTS_PER_HOME_SHARD,
            beams_runner,
        ),
        "+ a stateful DoFn, a new key per element, cache off": (_ReadWriteFn(), 1, local_runner),
    }
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, (step, keys_per, runner) in cases.items():
            timings[name].append(cpu_seconds(args.elements, step, keys_per, runner))
    base = statistics.median(timings["baseline: Create, a Map, Count"])
    print(f"{args.elements:,} elements, FnApiRunner, apache-beam {beam.__version__}; CPU us per element")
    print(f"  {'':<52} {'best':>8} {'median':>8} {'median over baseline':>21}")
    for name, cpus in timings.items():
        extra = (
            "" if name.startswith("baseline") else f"{(statistics.median(cpus) - base) / args.elements * 1e6:>21.1f}"
        )
        print(
            f"  {name:<52} {min(cpus) / args.elements * 1e6:>8.1f} "
            f"{statistics.median(cpus) / args.elements * 1e6:>8.1f} {extra}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
