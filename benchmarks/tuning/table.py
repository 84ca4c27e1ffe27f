"""Print results.jsonl as a Markdown table (one row per attempt, in run order)."""
import json
from pathlib import Path

LOG = Path(__file__).with_name("results.jsonl")


def fmt(cfg):
    if not cfg:
        return "DEFAULTS (before this tuning)"
    parts = []
    for k, v in cfg.items():
        if isinstance(v, bool):
            parts.append(f"{k}={'T' if v else 'F'}")
        elif isinstance(v, list):
            parts.append(f"{k}=({','.join(map(str, v))})")
        else:
            parts.append(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


print("| # | name | overrides of old DEFAULTS | best val RMSE | best epoch | epochs run | seconds | s/epoch |")
print("|---|---|---|---|---|---|---|---|")
for i, line in enumerate(LOG.read_text().splitlines(), 1):
    r = json.loads(line)
    if "error" in r:
        print(f"| {i} | {r['name']} | {fmt(r['cfg'])} | error: {r['error'][:60]} | | | | |")
        continue
    print(f"| {i} | {r['name']} | {fmt(r['cfg'])} | {r['best_val_rmse']:.4f} | {r['best_epoch']} | "
          f"{r['epochs_run']} | {r['seconds']:.0f} | {r['sec_per_epoch']:.2f} |")
