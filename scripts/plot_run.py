#!/usr/bin/env python3
"""Turns a run's csv_monitor files into a PNG of loss and throughput curves.

    scripts/plot_run.py RUN_DIR [-o RUN_DIR/curves.png]

RUN_DIR is `<csv_monitor.output_path>/<job_name>`: one `<event>.csv` per event
with the header `step,<event name>`. The x axis is the event's step column
(global samples for the engine's own events). Needs matplotlib
(scripts/bootstrap.sh installs it in the venv).
"""
import argparse
import csv
import os
import sys


def read_series(path):
    xs, ys = [], []
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None or len(header) != 2 or header[0] != "step":
            raise SystemExit(f"plot_run: {path}: expected the header 'step,<name>', got {header}")
        for n, row in enumerate(rows, start=2):
            if len(row) != 2:
                raise SystemExit(f"plot_run: {path}:{n}: expected 2 columns, got {len(row)}")
            xs.append(float(row[0]))
            ys.append(float(row[1]))
    return header[1], xs, ys


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("-o", "--output", help="PNG to write (default RUN_DIR/curves.png)")
    a = p.parse_args()
    series = {}
    for name in sorted(os.listdir(a.run_dir)):
        if name.endswith(".csv"):
            event, xs, ys = read_series(os.path.join(a.run_dir, name))
            series[event] = (xs, ys)
    if not series:
        raise SystemExit(f"plot_run: no .csv files in {a.run_dir} (is csv_monitor enabled?)")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [e for e in ("Train/Samples/train_loss", "Validation/loss") if e in series]
    rate = next((e for e in ("Train/Samples/tokens_per_sec", "Train/Samples/samples_per_sec") if e in series), None)
    panels = [p for p in (losses, [rate] if rate else []) if p]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False)
    for ax, events in zip(axes[:, 0], panels):
        for e in events:
            xs, ys = series[e]
            ax.plot(xs, ys, label=e, marker="o" if len(xs) < 30 else None, linewidth=1.2)
        ax.set_xlabel("samples")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0, 0].set_ylabel("loss")
    if rate:
        axes[-1, 0].set_ylabel(rate.rsplit("/", 1)[-1].replace("_", " "))
    fig.suptitle(os.path.basename(os.path.normpath(a.run_dir)))
    fig.tight_layout()
    out = a.output or os.path.join(a.run_dir, "curves.png")
    fig.savefig(out, dpi=100)
    print(f"plot: {out} ({', '.join(e for p in panels for e in p)})")


if __name__ == "__main__":
    sys.exit(main())
