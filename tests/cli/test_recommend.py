"""`npcf recommend`: a known user or a new user's ratings, from the ONNX file or, before
anything was exported, from the checkpoint; bad requests give one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from npcf.cli import main


@pytest.fixture(scope="module")
def run_dir(movies_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "models"
    r = CliRunner().invoke(main, ["train", "--tune", "off", "--n_epochs", "1", "--layers", "16", "--quiet",
                                  "--data", str(movies_small / "ratings.csv"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


def recommend(*args):
    return CliRunner().invoke(main, ["recommend", *map(str, args)])


def test_falls_back_to_the_checkpoint_then_uses_the_export(run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(run_dir.parent)            # models/ is the default run directory
    before = recommend("--user", 1, "--json", "-k", 5)
    assert before.exit_code == 0, before.output
    recs = json.loads(before.output)
    assert [r["rank"] for r in recs] == [1, 2, 3, 4, 5] and all(r["title"] for r in recs)
    r = CliRunner().invoke(main, ["eval", "--generate", "--top_k", "10"])
    assert r.exit_code == 0, r.output
    after = recommend("--user", 1, "--json", "-k", 5)
    assert after.exit_code == 0, after.output
    assert [r["movie_id"] for r in json.loads(after.output)] == [r["movie_id"] for r in recs]
    table = recommend("--ratings", "1:5,260:4.5,1196:5", "-k", 3)
    assert table.exit_code == 0 and len(table.output.splitlines()) == 5     # header, rule, 3


def test_a_known_user_is_never_recommended_a_movie_of_their_test_part(run_dir):
    """Every rating of the data counts as seen for a recommendation (only `eval
    --evaluate` keeps the test part hidden): user 15 rated Seven (1995) 5 in the file."""
    from npcf.data.dataset import load_prepared
    ds = load_prepared(run_dir / "data")
    test = ds.split.test
    users = np.flatnonzero(np.diff(test.indptr) > 0)[:5]
    for u in users:
        user = ds.users.ids[u].item()
        r = recommend("--model", run_dir / "model.npz", "--user", user, "--json", "-k", 1000)
        assert r.exit_code == 0, r.output
        shown = {rec["movie_id"] for rec in json.loads(r.output)}
        held = set(ds.items.ids[test[u].indices].tolist())
        assert held and not shown & held


@pytest.mark.parametrize("args, message, code", [       # a bad --ratings value: exit 2
    (["--ratings", "1:5,1:3"], "rated more than once", 2),
    (["--ratings", '{"1": 5, "1": 3}'], "movie 1 is rated more than once", 2),
    (["--ratings", "1:99"], "outside the model's scale", 2),
    (["--ratings", "999999999:4"], "unknown movie", 2),
    (["--user", "no-such-user"], "unknown user id", 1),
])
def test_bad_requests_are_one_line(run_dir, args, message, code):
    r = recommend("--model", run_dir / "model.npz", *args)
    assert r.exit_code == code and message in r.output and len(r.output.splitlines()) == 1, \
        r.output


def test_a_titles_file_of_other_movies_is_named(run_dir, tmp_path):
    other = tmp_path / "movies.csv"
    other.write_text("movieId,title,genres\n424242424,Nothing Here (1999),Drama\n")
    for model in ("model.npz", "model.onnx"):
        r = recommend("--model", run_dir / model, "--ratings", "1:5", "--movies", other)
        if not (run_dir / model).exists():
            continue
        assert r.exit_code == 1 and f"{other}: none of its 1 movie ids" in r.output, r.output


@pytest.mark.parametrize("suffix", [".npz", ".onnx"])
def test_a_user_without_ratings_as_serve_answers_one(run_dir, tmp_path, suffix):
    """'[]' / '{}' is a cold user (serve's {"ratings": []}); an empty string is refused."""
    from npcf.workflows import export_model, open_model
    model = run_dir / "model.npz"
    if suffix == ".onnx":
        model = tmp_path / "cold.onnx"
        export_model(run_dir / "model.npz", model)
    want = open_model(model).recommend([], k=4)[0].tolist()
    for text in ("[]", " {} "):
        r = recommend("--model", model, "--ratings", text, "--json", "-k", 4)
        assert r.exit_code == 0, r.output
        assert [x["movie_id"] for x in json.loads(r.output)] == want
    r = recommend("--model", model, "--ratings", "")
    assert r.exit_code == 2 and "--ratings '[]'" in r.output


def test_usage_errors(run_dir):
    assert recommend("--model", run_dir / "model.npz").exit_code == 2
    assert recommend("--model", run_dir / "model.npz", "--user", 1, "-k", 0).exit_code == 2
    r = recommend("--model", run_dir / "model.npz", "--ratings", "1-5")
    assert r.exit_code == 2 and "movieId:rating" in r.output


def test_a_known_user_of_an_item_based_model(tmp_path, run_dir):
    from npcf import AutoEncoder
    from npcf.data.dataset import load_prepared
    out = tmp_path / "item"
    r = CliRunner().invoke(main, ["train", "--tune", "off", "--item_based", "--n_epochs", "2",
                                  "--layers", "16", "--quiet", "--data", str(run_dir / "data"),
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    got = recommend("--model", out / "model.npz", "--user", 1, "--json", "-k", 5)
    assert got.exit_code == 0, got.output
    recs = json.loads(got.output)
    # the same as ranking that user's row of the model's full item-based prediction from
    # every rating known at test time: the scores `eval --evaluate` ranks for that user
    from npcf.workflows import _score_fn
    ds, model = load_prepared(out / "data"), AutoEncoder.load(out)
    u = ds.users.index([1])[0]
    scores = model.predict(ds.split.test_input)[u]
    np.testing.assert_array_equal(_score_fn(model, ds.split.test_input, 64)(np.array([u]))[0],
                                  scores)
    seen = set(ds.items.ids[ds.user_row(1).indices].tolist())
    want = [m for m in ds.items.ids[(-scores).argsort(kind="stable")].tolist()
            if m not in seen][:5]
    assert [x["movie_id"] for x in recs] == want
    assert not seen & {x["movie_id"] for x in recs}
    new = recommend("--model", out / "model.npz", "--ratings", "1:5")
    assert new.exit_code == 1 and "--user_based" in new.output
    other = recommend("--model", out / "model.npz", "--user", 1, "--data", run_dir / "data")
    assert other.exit_code == 0, other.output              # the same training part


def test_ratings_option_takes_ids_holding_colons_and_json_for_commas():
    from npcf.cli.options import rating_pairs
    assert rating_pairs(None, None, "1:5, m:9:4.5") == [("1", 5.0), ("m:9", 4.5)]
    assert rating_pairs(None, None, '[["film 1, the", 5], [260, 4.5]]') == \
        [("film 1, the", 5.0), ("260", 4.5)]
    assert rating_pairs(None, None, '{"film 1, the": 5}') == [("film 1, the", 5.0)]
    import click
    for text, bad in (('{"": 5}', "':5'"), (":5,2:4", "':5'")):          # the empty one named
        with pytest.raises(click.BadParameter, match=f"empty movie id in {bad}"):
            rating_pairs(None, None, text)


def test_model_may_be_a_run_directory(tmp_path, movies_small):
    """recommend refused a run directory that eval takes; both take its model.onnx,
    else its model.npz."""
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--tune", "off", "--n_epochs", "1", "--layers", "8",
                                  "-q", "--data", str(movies_small / "ratings.csv"),
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    npz = CliRunner().invoke(main, ["recommend", "--model", str(out), "--ratings", "1:5",
                                    "--json"])
    assert npz.exit_code == 0, npz.output
    assert CliRunner().invoke(main, ["eval", "--generate", "--model", str(out / "model.npz"),
                                     "-q"]).exit_code == 0
    onnx = CliRunner().invoke(main, ["recommend", "--model", str(out), "--ratings", "1:5",
                                     "--json"])
    assert onnx.exit_code == 0, onnx.output
    assert [r["movie_id"] for r in json.loads(onnx.output)] == \
        [r["movie_id"] for r in json.loads(npz.output)]
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(main, ["recommend", "--model", str(empty), "--ratings", "1:5"])
    assert r.exit_code == 1 and "no model in" in r.output, r.output


def test_an_export_older_than_rank_scores_gets_one_warning_line(run_dir, tmp_path):
    from npcf.workflows import export_model

    from helpers import without_rank_scores
    path = tmp_path / "m.onnx"
    export_model(run_dir / "model.npz", path)
    old = without_rank_scores(path, tmp_path / "old.onnx")
    r = recommend("--model", old, "--ratings", "1:5,260:4.5", "--json", "-k", 3)
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)) == 3
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "re-export" in lines[0]
    r = recommend("--model", path, "--ratings", "1:5,260:4.5", "--json", "-k", 3)
    assert r.exit_code == 0 and r.stderr == ""
