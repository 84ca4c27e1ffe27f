"""What the commands print: tables aligned by display width, ids shown escaped."""
from __future__ import annotations

from npcf.cli.output import short, table, width


def test_wide_characters_take_two_columns_and_tables_align_on_them():
    assert width("映画") == 4 and width("abc") == 3 and width("e\u0301") == 1
    lines = table([("映画", 1.5), ("ab", 22.25)], ("movie", "score"), align="lr").splitlines()
    assert [width(line) for line in lines[2:]] == [width(lines[2])] * 2   # same right edge
    assert lines[2].endswith("1.5") and lines[3].endswith("22.25")


def test_short_cuts_by_columns_and_control_characters_are_escaped():
    assert short("映画" * 30, 10) == "映画映画…"
    assert width(short("映画" * 30, 10)) <= 10
    assert short("plain", 10) == "plain"
    assert table([("a\tb\x1b[31m",)]).strip() == "a\\tb\\x1b[31m"


def test_counts_take_the_number_their_noun_needs():
    from npcf.cli.output import counted
    assert counted(1, "partition") == "1 partition"
    assert counted(0, "user") == "0 users" and counted(2000, "user") == "2,000 users"


def test_the_tuning_table_says_which_budget_ended_the_search():
    from npcf.cli.output import tuning_table
    trials = [dict(rung=1, epochs=3, activation="relu", score=0.9, seconds=1.0)]
    summary = dict(metric="val_rmse", trials=1, seconds=2.0, rungs=[3, 9], budget=120.0,
                   budget_hit=1)
    assert tuning_table(summary, trials).startswith(
        "tuning: the budget (120 s) ended the search at rung 1 of 2;")
    summary["search_budget"] = 72.0
    assert tuning_table(summary, trials).startswith(
        "tuning: the budget's search share (72 s of 120 s) ended the search at rung 1 of 2;")
    assert "then trained with the full 9 epochs" in tuning_table(summary, trials)
    assert "the cross-fitting below refits its best configuration for up to 9 epochs" in \
        tuning_table(dict(summary, unfinished=True), trials)
    assert "budget" not in tuning_table(dict(summary, budget_hit=0), trials).splitlines()[0]
    assert "ended the search at rung 1 of 2 (2 trials still running stopped);" in \
        tuning_table(dict(summary, abandoned=2), trials)
    assert tuning_table(dict(summary, budget_hit=0, abandoned=1), trials).startswith(
        "tuning: the budget's search share (72 s of 120 s) ended the search in its last "
        "rung (1 trial still running stopped)\n")
