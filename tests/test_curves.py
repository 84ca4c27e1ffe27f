"""`npcf plot`: loss curves from history.csv; a one-line hint without matplotlib."""
from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from npcf.cli import main
from npcf.curves import INSTALL_HINT, plot_history, read_history
from npcf.errors import NpcfError

HISTORY = """epoch,train_loss,val_loss,val_rmse,lr,seconds
1,0.69,0.81,0.903,0.001,0.35
2,0.66,0.80,0.900,0.001,0.33
3,0.62,0.82,0.907,0.001,0.34
"""


@pytest.fixture()
def history(tmp_path):
    f = tmp_path / "history.csv"
    f.write_text(HISTORY)
    return f


def test_read_history(history, tmp_path):
    cols = read_history(history)
    assert cols["epoch"] == [1, 2, 3] and cols["val_loss"][2] == 0.82
    no_val = tmp_path / "h2.csv"
    no_val.write_text("epoch,train_loss,val_loss,val_rmse,lr,seconds\n1,0.5,,,0.001,1\n")
    assert str(read_history(no_val)["val_loss"][0]) == "nan"
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(NpcfError, match="not a training history"):
        read_history(bad)
    with pytest.raises(NpcfError, match="no such|No such"):
        read_history(tmp_path / "missing.csv")


def test_plot_writes_png(history, tmp_path):
    pytest.importorskip("matplotlib")
    out = plot_history(history, tmp_path / "sub" / "loss.png", title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plot(history, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "loss.png"
    r = CliRunner().invoke(main, ["plot", str(history), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 1000 and f"wrote {out}" in r.output
    r = CliRunner().invoke(main, ["plot", str(history)])         # default: beside it
    assert r.exit_code == 0 and (history.parent / "loss.png").is_file()


def test_cli_plot_ndcg_history_without_validation(tmp_path):
    pytest.importorskip("matplotlib")
    f = tmp_path / "history.csv"
    f.write_text("epoch,train_loss,val_loss,val_ndcg,lr,seconds\n1,5.1,,,0.001,1\n"
                 "2,4.9,,,0.001,1\n")
    r = CliRunner().invoke(main, ["plot", str(f), "-o", str(tmp_path / "a.svg")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.svg").read_text().lstrip().startswith("<?xml")


def test_without_matplotlib_one_line_error(history, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)        # import fails
    r = CliRunner().invoke(main, ["plot", str(history), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 1
    assert r.output.strip() == f"Error: {INSTALL_HINT}"
    assert "pip install 'npcf[plot]'" in r.output
    assert not (tmp_path / "x.png").exists()


def test_cli_plot_missing_file(tmp_path):
    r = CliRunner().invoke(main, ["plot", str(tmp_path / "nope.csv")])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1


ENSEMBLE = """member,epoch,train_loss,val_loss,val_rmse,lr,seconds
0,1,0.70,0.81,0.903,0.001,0.3
0,2,0.66,0.80,0.899,0.001,0.3
1,1,0.71,0.82,0.905,0.001,0.3
1,2,0.65,0.79,0.897,0.001,0.3
1,3,0.61,0.80,0.901,0.001,0.3
"""


def test_an_ensemble_history_is_one_run_per_member(tmp_path):
    from npcf.curves import _runs
    f = tmp_path / "history.csv"
    f.write_text(ENSEMBLE)
    assert _runs(read_history(f)) == [(", member 0", [0, 1]), (", member 1", [2, 3, 4])]
    assert _runs({"epoch": [1.0, 2.0]}) == [("", [0, 1])]
    pytest.importorskip("matplotlib")
    out = plot_history(f, tmp_path / "loss")                # no extension: PNG
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "loss"]


def test_a_plot_that_cannot_be_written_leaves_nothing(history, tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(NpcfError, match=r"written as \.png, \.svg, \.pdf"):
        plot_history(history, tmp_path / "loss.xyz")         # unknown format
    with pytest.raises(NpcfError, match="cannot record that npcf drew it"):
        plot_history(history, tmp_path / "loss.jpg")         # could not be redrawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]


@pytest.mark.parametrize("name", ["mine.png", "mine.svg", "mine.pdf", "mine.eps", "loss.png"])
def test_a_plot_never_replaces_the_users_own_image(history, tmp_path, name):
    """-o naming an existing file npcf did not draw is refused and the file kept (a
    loss.png outside a run directory is the user's too)."""
    pytest.importorskip("matplotlib")
    out = tmp_path / name
    out.write_bytes(b"\x89PNG\r\n\x1a\n the user's picture")
    r = CliRunner().invoke(main, ["plot", str(history), "-o", str(out)])
    assert r.exit_code == 1, r.output
    assert r.output.strip() == (f"Error: {out}: exists and is not a plot npcf drew; remove it "
                                "or choose another -o/--out")
    assert out.read_bytes() == b"\x89PNG\r\n\x1a\n the user's picture"


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf", ".eps"])
def test_a_plot_npcf_drew_is_drawn_again(history, tmp_path, suffix):
    pytest.importorskip("matplotlib")
    from npcf.curves import is_npcf_plot
    out = plot_history(history, tmp_path / f"a{suffix}")
    assert is_npcf_plot(out)
    before = out.read_bytes()
    plot_history(history, out, title="again")
    assert out.read_bytes() != before


def test_a_run_directorys_old_loss_png_is_replaced(history, tmp_path):
    """A run directory's loss.png (drawn before plots recorded their producer) is npcf's."""
    pytest.importorskip("matplotlib")
    (tmp_path / "model.json").write_text("{}")
    (tmp_path / "loss.png").write_bytes(b"old plot")
    r = CliRunner().invoke(main, ["plot", str(history)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_a_plot_into_a_run_directory_in_use_is_refused(history, tmp_path):
    """A plot into a run directory another command holds (train rebuilding it) fails at
    once rather than being swapped away."""
    pytest.importorskip("matplotlib")
    from npcf.utils.files import dir_lock
    (tmp_path / "model.json").write_text("{}")
    with dir_lock(tmp_path):
        r = CliRunner().invoke(main, ["plot", str(history), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 1, r.output
    assert "in use by another npcf command" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()
