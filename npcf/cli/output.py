"""What the commands print: aligned tables, metric tables, example users, and the
progress bar factory (:mod:`npcf.utils.progress`) drawn with click."""
from __future__ import annotations

import math
import sys
import unicodedata

import click

from npcf.utils.format import decimal
from npcf.utils.progress import open_progress

ROW_LABELS = {"precision": "Precision", "recall": "Recall", "ndcg": "NDCG", "map": "MAP",
              "hit_rate": "Hit rate", "coverage": "Coverage", "gini": "Gini (exposure)",
              "popularity": "Popularity pct", "personalization": "Personalization"}


def progress_bar(total: int, label: str, info=None):
    """A click progress bar on stderr when it is a terminal (else silent)."""
    if not total or not sys.stderr.isatty():
        return open_progress(None, total, label)
    return click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True,
                             item_show_func=info)


def progress_or_none(quiet: bool):
    """:func:`progress_bar` unless ``quiet``."""
    return None if quiet else progress_bar


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal: wide (CJK) characters two, combining marks
    none, everything else one."""
    return sum(0 if unicodedata.combining(ch) else
               2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, w: int, right: bool) -> str:
    fill = " " * max(0, w - width(text))
    return fill + text if right else text + fill


def table(rows, headers=None, align=None) -> str:
    """Rows (sequences) as an aligned plain-text table; ``align``: "l"/"r" per column.
    Aligned by display width (a CJK title takes two columns per character)."""
    rows = [[fmt(c) for c in r] for r in rows]
    if headers:
        rows.insert(0, list(headers))
    widths = [max(width(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        cells = [_pad(c, w, bool(align) and align[i] == "r")
                 for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
        if headers and k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:,.4f}".rstrip("0").rstrip(".")
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if v is None:
        return ""
    text = str(v)             # a control character (an id read from a file) shown escaped
    return text if text.isprintable() else "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def short(text: str, columns: int = 52) -> str:
    """``text`` cut to ``columns`` display columns with an ellipsis."""
    if width(text) <= columns:
        return text
    out, used = [], 1
    for ch in text:
        used += width(ch)
        if used > columns:
            break
        out.append(ch)
    return "".join(out) + "…"


def size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:,.2f} MB" if n_bytes >= 1e5 else f"{n_bytes / 1e3:,.1f} kB"


def num(v, key: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if key.startswith("popularity"):
        return f"{v:.1f}"
    return decimal(v, 4)


def stats_table(stats: dict) -> str:
    keys = ("n_users", "n_items", "n_ratings", "density", "rating_min", "rating_max",
            "duplicates_resolved")
    rows = [(k, stats.get(k)) for k in keys]
    rows += [(f"{name} ratings", n) for name, n in stats.get("parts", {}).items()]
    return table(rows, ("", "value"), align="lr")


def metrics_table(result: dict, ks) -> str:
    """Rows = metrics, columns = cut-offs K (fits in 80 columns)."""
    rows = [[label] + [num(result.get(f"{m}@{k}"), m) for k in ks]
            for m, label in ROW_LABELS.items()]
    return table(rows, ["metric"] + [f"@{k}" for k in ks], align="l" + "r" * len(ks))


def compare_table(results: dict, ks) -> str:
    """Rows = metrics (RMSE, MAE, then each metric at each K), columns = models."""
    names = list(results)
    rows = [[key.upper()] + [num(results[n].get(key)) for n in names] for key in ("rmse", "mae")]
    for m, label in ROW_LABELS.items():
        for k in ks:
            rows.append([f"{label}@{k}"] + [num(results[n].get(f"{m}@{k}"), m)
                                            for n in names])
    return table(rows, ["metric"] + names, align="l" + "r" * len(names))


def tuning_table(summary: dict, trials: list[dict], n: int = 12) -> str:
    """The search on one screen: the best ``n`` trials of the highest rungs, and the choice."""
    metric = summary["metric"]
    higher = metric != "val_rmse"
    best = sorted(trials, key=lambda t: (-t["rung"], -t["score"] if higher else t["score"]))[:n]
    keys = [k for k in trials[0]
            if k not in ("rung", "epochs", "score", "best_epoch", "epochs_run", "seconds")]
    rows = [[t["rung"], t["epochs"]] + [_cell(t[k]) for k in keys] + [f"{t['score']:.4f}",
                                                                    f"{t['seconds']:.1f}"]
            for t in best]
    head = (f"tuning: {summary['trials']} trials in {summary['seconds']:g} s, rungs of "
            f"{'/'.join(map(str, summary['rungs']))} epochs; best {len(best)} by {metric}:")
    if summary.get("bias_reg"):
        regs = ", ".join(f"{v:g}" for v in summary["bias_reg"])
        head = (f"tuning: bias residual's ridge strengths (users, items) {regs}, "
                f"cross-validated on the training part\n" + head)
    stopped = summary.get("abandoned") or 0
    if summary.get("budget_hit") or stopped:
        cap = summary.get("search_budget") or summary["budget"]
        what = (f"the budget ({cap:g} s)" if cap == summary["budget"] else
                f"the budget's search share ({cap:g} s of {summary['budget']:g} s)")
        killed = f" ({counted(stopped, 'trial')} still running stopped)" if stopped else ""
        if summary.get("budget_hit"):
            then = ("the cross-fitting below refits its best configuration for up to"
                    if summary.get("unfinished") else
                    "its best configuration was then trained with the full")
            head = (f"tuning: {what} ended the search at rung {summary['budget_hit']} of "
                    f"{len(summary['rungs'])}{killed}; {then} {summary['rungs'][-1]} "
                    f"epochs\n" + head)
        else:
            head = f"tuning: {what} ended the search in its last rung{killed}\n" + head
    return head + "\n" + table(rows, ["rung", "ep"] + [_short_name(k) for k in keys]
                               + [metric, "s"], align="rr" + "l" * len(keys) + "rr")


def _cell(v) -> str:
    if isinstance(v, bool):
        return "y" if v else "n"
    if isinstance(v, list):
        return ",".join(map(str, v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def _short_name(key: str) -> str:
    return {"activation": "act", "weight_decay": "wd", "noise_level": "noise",
            "item_based": "item", "dropout": "drop", "residual": "resid"}.get(key, key)


def summary(result: dict) -> str:
    line = f"test: {result['n_users']:,} users, {result['n_ratings']:,} held-out ratings"
    thr = result.get("threshold")
    rel = (f"relevant: held-out rating >= {thr:g} ({result['n_relevant']:,} ratings of "
           f"{result['n_ranked_users']:,} users)") if thr is not None else \
        "relevant: every held-out item"
    return line + "\n" + rel


def examples_text(records: list[dict]) -> str:
    blocks = []
    for r in records:
        head = (f"user {r['user_id']}: {r['n_input']} ratings in, {r['n_heldout']} held out "
                f"({r['n_relevant']} relevant); top {len(r['top'])}  (* = relevant)")
        rows = [(i + 1, "*" if t["relevant"] else "", str(t["movie_id"]),
                 short(t["title"], 50), decimal(t["score"], 3)) for i, t in enumerate(r["top"])]
        blocks.append(head + "\n" + table(rows, ("#", "", "movie", "title", "score"),
                                          align="rlrlr"))
    return "\n\n".join(blocks)


__all__ = ["compare_table", "examples_text", "fmt", "metrics_table", "num",
           "progress_bar", "progress_or_none", "short", "size", "stats_table", "summary",
           "table"]


def counted(n: int, noun: str) -> str:
    """``"1 user"``, ``"2,000 users"``: ``n`` with ``noun`` in the number it needs."""
    return f"{n:,} {noun}{'s' * (n != 1)}"


def duplicates_note(n: int) -> str:
    """The line saying ``n`` repeated (user, movie) ratings were merged, and how."""
    return (f"merged {counted(n, 'repeated (user, movie) rating')}: the latest timestamp "
            "kept (on a tie, or without timestamps, the later line)")
