#!/usr/bin/env python3
"""Reads a run's TensorBoard event files with TensorBoard's own loader and
checks the scalars: usage: read_tfevents.py RUN_DIR TAG MIN_COUNT [TAG MIN_COUNT ...]

Prints each tag's count and first/last values; exits 1 when a tag has fewer
events than asked or a value is not finite."""
import math
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    run_dir, pairs = sys.argv[1], sys.argv[2:]
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    ok = True
    for tag, need in zip(pairs[::2], pairs[1::2]):
        if tag not in tags:
            print(f"read_tfevents: {tag} missing; scalars are {sorted(tags)}")
            ok = False
            continue
        events = acc.Scalars(tag)
        values = [e.value for e in events]
        print(f"{tag}: {len(events)} events, steps {events[0].step}..{events[-1].step}, "
              f"first {values[0]:.4f}, last {values[-1]:.4f}")
        if len(events) < int(need) or not all(math.isfinite(v) for v in values):
            print(f"read_tfevents: {tag}: expected at least {need} finite values")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
