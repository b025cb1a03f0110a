"""Sweep grids without Ray: parsing, expansion, names, and every config checked up front."""

import json

import pytest

from mtrl.cli import main
from mtrl.errors import MtrlError
from mtrl.sweep.grid import check_trials, expand, parse_grid, parse_seeds, split_values


def test_values_split_outside_brackets_and_quotes():
    assert split_values("mean,pcgrad, cagrad") == ["mean", "pcgrad", "cagrad"]
    assert split_values("[256,256],[400,400,400]") == ["[256,256]", "[400,400,400]"]
    assert split_values("'a,b',c") == ["'a,b'", "c"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("surgery", "is not of the form KEY=V1,V2"),
        ("=a,b", "has an empty key"),
        ("surgery=mean,,pcgrad", "has an empty value"),
        ("surgery=mean,mean", "repeats a value"),
        ("seed=1,2", "the sweep sets seed itself (use --seeds)"),
        ("out=a,b", "the sweep sets out itself"),
    ],
)
def test_bad_grid_axes_are_one_line_errors(text, message):
    with pytest.raises(MtrlError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_grid(text)


def test_seeds_ranges_and_lists():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("0,3,7") == [0, 3, 7]
    assert parse_seeds("0-2,9,1") == [0, 1, 2, 9]
    for bad in ("a", "3-1", "1-", ""):
        with pytest.raises(MtrlError, match="--seeds"):
            parse_seeds(bad)


def test_expansion_names_and_overrides():
    axes = [parse_grid("surgery=mean,pcgrad"), parse_grid("agent.hidden=[32,32],[16]")]
    trials = expand(axes, [0, 1], ["steps=10", "surgery=cagrad"], "sw")
    assert len(trials) == 8 and len({t.name for t in trials}) == 8
    first = trials[0]
    assert first.name == "surgery=mean__agent.hidden=32-32__seed0"
    # a grid key overrides the same shared key; the sweep names and seeds every trial
    assert first.overrides == (
        "steps=10",
        "surgery=mean",
        "agent.hidden=[32,32]",
        "name=sw",
        "seed=0",
    )
    with pytest.raises(MtrlError, match="repeats a key"):
        expand([axes[0], axes[0]], [0], [], "sw")


def test_every_combination_is_checked_before_anything_starts(tmp_path):
    trials = expand(
        [parse_grid("surgery=pcgrad,cagrad"), parse_grid("surgery.c=0.5,-1")], [0], [], "s"
    )
    # pcgrad has no option c, and c=-1 is out of range for cagrad: the first bad trial is named
    with pytest.raises(MtrlError, match=r"^trial surgery=pcgrad, surgery.c=0.5: "):
        check_trials("quickstart", trials)
    good = expand([parse_grid("surgery=mean,pcgrad")], [0, 1], ["steps=10"], "s")
    assert len(check_trials("quickstart", good)) == 4


def test_cli_rejects_a_bad_grid_without_creating_anything(tmp_path, capsys):
    code = main(
        [
            "sweep",
            "quickstart",
            "--grid",
            "agent.gamma=0.9,2",
            "--out",
            str(tmp_path),
            "--seeds",
            "0-1",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == "mtrl: error: trial agent.gamma=2: agent.gamma=2: must be <= 1"
    assert list(tmp_path.iterdir()) == []


def test_resume_needs_the_same_sweep(tmp_path, capsys):
    args = ["sweep", "quickstart", "--grid", "surgery=mean,pcgrad", "--out", str(tmp_path)]
    folder = tmp_path / "quickstart"
    folder.mkdir()
    (folder / "sweep.json").write_text(
        json.dumps({"experiment": "quickstart", "overrides": [], "grid": [], "seeds": [0]})
    )
    assert main(args) == 2
    assert "add --resume to continue it" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 2
    assert "this sweep's grid differ from" in capsys.readouterr().err
