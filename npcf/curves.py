"""Training curves from ``history.csv`` (written by ``train``) with matplotlib.

matplotlib is optional (``pip install 'npcf[plot]'``) and imported only when a
plot is drawn; without it :func:`plot_history` raises :class:`NpcfError`.
"""
from __future__ import annotations

import math
from pathlib import Path

from npcf import rundir
from npcf._version import __version__
from npcf.errors import NpcfError, one_line, os_message
from npcf.utils.files import atomic_path

INSTALL_HINT = "matplotlib is not installed: pip install 'npcf[plot]'"
METRIC_LABELS = {"val_rmse": "validation RMSE", "val_ndcg": "validation NDCG@100"}
#: what a plot records as its software (PNG) or creator (SVG, PDF, PostScript): a file
#: holding it was drawn here and may be drawn again
PRODUCER = "npcf plot"
_METADATA_KEY = {"png": "Software", "svg": "Creator", "pdf": "Creator", "ps": "Creator",
                 "eps": "Creator"}


def is_npcf_plot(path) -> bool:
    """Whether the image file ``path`` records :data:`PRODUCER` (near its start, or its
    end for PDF's information dictionary)."""
    marker = PRODUCER.encode()
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            f.seek(max(0, f.seek(0, 2) - (1 << 16)))
            return marker in head or marker in f.read()
    except OSError:
        return False


def check_plot_target(out) -> Path:
    """``out`` as a Path a plot may be written to: NpcfError if it is a directory, or an
    existing file npcf did not draw (a plot never replaces the user's own image); a
    ``loss.png`` of a run directory counts as drawn by npcf."""
    out = Path(out)
    if out.is_dir():
        raise NpcfError(f"{out}: is a directory; name the image file to write in it")
    fmt = out.suffix.lstrip(".").lower() or "png"
    if fmt not in _METADATA_KEY:        # it could not record that npcf drew it
        raise NpcfError(f"{out}: a plot is written as .png, .svg, .pdf, .ps or .eps (a "
                        f".{fmt} file cannot record that npcf drew it, to be redrawn)")
    if out.exists() and not is_npcf_plot(out) and not (
            out.name == rundir.PLOT_NAME and rundir.is_run_dir(out.parent)):
        raise NpcfError(f"{out}: exists and is not a plot npcf drew; remove it or choose "
                        "another -o/--out")
    return out


def read_history(path) -> dict[str, list[float]]:
    """Columns of ``history.csv`` as lists of floats (NaN for empty cells)."""
    path = Path(path)
    try:
        rows = rundir.read_history(path, missing_ok=False)
        names = rundir.history_header(path)
    except OSError as err:
        raise NpcfError(f"{path}: {err.strerror or err}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise NpcfError(f"{path}: not a training history ({one_line(err)})") from None
    if not rows or "epoch" not in rows[0] or "train_loss" not in rows[0]:
        raise NpcfError(f"{path}: not a training history (needs epoch and train_loss columns"
                        f"{' and at least one epoch' if rows else ''})")
    return {k: [float(row.get(k, math.nan)) for row in rows] for k in names}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise NpcfError(INSTALL_HINT) from None
    matplotlib.use("Agg", force=True)      # files only, no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    return plt, MaxNLocator


def _runs(cols) -> list[tuple[str, list[int]]]:
    """``[(label suffix, row positions)]``: one per ensemble member (a ``member``
    column), else one for the whole history."""
    if "member" not in cols:
        return [("", list(range(len(cols["epoch"]))))]
    members = sorted({int(v) for v in cols["member"] if not math.isnan(v)})
    return [(f", member {k}", [i for i, v in enumerate(cols["member"]) if v == k])
            for k in members]


def plot_history(history, out, *, title: str | None = None, dpi: int = 120) -> Path:
    """Draw training and validation loss per epoch (and the validation metric, if
    recorded, on a second panel) from ``history`` (a ``history.csv`` path) to ``out``
    (written atomically; the format follows its extension; an existing ``out`` only if
    npcf drew it, :func:`check_plot_target`). An ensemble's history gets one line per
    member."""
    cols = read_history(history)
    out = check_plot_target(out)
    plt, locator = _pyplot()
    runs = _runs(cols)
    metric = next((k for k in METRIC_LABELS if k in cols and
                   any(not math.isnan(v) for v in cols[k])), None)
    n_panels = 2 if metric else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(5.5 * n_panels, 4), squeeze=False)
    ax = axes[0][0]
    has_val = "val_loss" in cols and any(not math.isnan(v) for v in cols["val_loss"])
    for j, (suffix, rows) in enumerate(runs):
        epochs = [cols["epoch"][i] for i in rows]
        marker = "o" if len(epochs) <= 30 else None
        color = f"C{(2 * j) % 10}"
        ax.plot(epochs, [cols["train_loss"][i] for i in rows], marker=marker, color=color,
                label=f"training loss{suffix}")
        if has_val:
            ax.plot(epochs, [cols["val_loss"][i] for i in rows], marker=marker,
                    color=f"C{(2 * j + 1) % 10}", label=f"validation loss{suffix}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(locator(integer=True))
    ax.set_ylabel("loss")
    ax.set_title("loss per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    if metric:
        ax2 = axes[0][1]
        for j, (suffix, rows) in enumerate(runs):
            epochs = [cols["epoch"][i] for i in rows]
            values = [cols[metric][i] for i in rows]
            color = "C2" if len(runs) == 1 else f"C{j % 10}"
            ax2.plot(epochs, values, marker="o" if len(epochs) <= 30 else None, color=color)
            vals = [(v, e) for v, e in zip(values, epochs) if not math.isnan(v)]
            if not vals:
                continue
            best = min(vals) if metric == "val_rmse" else max(vals)
            ax2.axvline(best[1], color=color if len(runs) > 1 else "grey", linestyle="--",
                        linewidth=1, label=f"best{suffix}: epoch {best[1]:g} ({best[0]:.4f})")
        ax2.set_xlabel("epoch")
        ax2.xaxis.set_major_locator(locator(integer=True))
        ax2.set_ylabel(METRIC_LABELS[metric])
        ax2.set_title(METRIC_LABELS[metric])
        ax2.grid(alpha=0.3)
        ax2.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fmt = out.suffix.lstrip(".").lower() or "png"
    key = _METADATA_KEY.get(fmt)
    try:
        with rundir.writing_into(out.parent), atomic_path(out, suffix=out.suffix) as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt,
                        metadata={key: f"{PRODUCER} {__version__}"} if key else None)
    except OSError as err:
        raise NpcfError(f"{out}: cannot write the plot ({os_message(err)})") from None
    except ValueError as err:
        raise NpcfError(f"{out}: cannot write the plot ({one_line(err)})") from None
    finally:
        plt.close(fig)
    return out
