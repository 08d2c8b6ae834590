"""Draws docs/benchmarks.png from docs/benchmarks.json: initial sync time (operator and the
physical limit) and the operator's peak memory, against the number of resources."""

import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

docs = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
samples = json.loads((docs / "benchmarks.json").read_text())
n = [s["resources"] for s in samples]

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
left.plot(n, [s["sync_seconds"] for s in samples], "o-", label="operator: all Ready")
left.plot(n, [s["limit_seconds"] for s in samples], "s--", label="limit: plain server-side apply")
left.set(xscale="log", yscale="log", xlabel="resources (N)", ylabel="seconds", title="Initial sync")
left.legend()
left.grid(True, which="both", alpha=0.3)
right.plot(n, [s["peak_rss_mib"] for s in samples], "o-", color="tab:green", label="operator peak RSS")
right.axhline(64, color="tab:red", linestyle=":", label="goal: 64 MiB")
right.set(xscale="log", xlabel="resources (N)", ylabel="MiB", title="Peak memory")
right.legend()
right.grid(True, which="both", alpha=0.3)
fig.tight_layout()
fig.savefig(docs / "benchmarks.png", dpi=110)
print(f"wrote {docs / 'benchmarks.png'}")
