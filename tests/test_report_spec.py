"""Report specs: wrong types name the key, --init, several specs, every key documented."""

from __future__ import annotations

from pathlib import Path

import pytest

import imrsurv as ims
from imrsurv.cli import main
from imrsurv.report.build import report
from imrsurv.report.spec import KEYS, load_spec, reference_markdown, starter_spec

ROOT = Path(__file__).resolve().parent.parent
BASE = {"study": {"title": "t"}, "data": {"dataset": "norway_imr"}}


def spec_with(table: str, key: str, value) -> dict:
    s = {k: dict(v) for k, v in BASE.items()}
    s.setdefault(table, {})[key] = value
    return s


@pytest.mark.parametrize("table, key, value, expected", [
    ("analysis", "horizon", "abc", "a positive finite number"),
    ("analysis", "horizon", float("nan"), "a positive finite number"),
    ("analysis", "horizon", -1, "a positive finite number"),
    ("analysis", "horizon", True, "a positive finite number"),
    ("analysis", "seed", "x", "an integer"),
    ("analysis", "seed", 1.5, "an integer"),
    ("analysis", "times", ["a"], "a list of positive finite numbers"),
    ("analysis", "times", 3, "a list of positive finite numbers"),
    ("data", "recent_window", "x", "a positive finite number"),
    ("analysis", "ties", "exact", "one of efron, breslow"),
    ("analysis", "sections", ["km", "kaplan"], "a list of values from summary"),
    ("analysis", "covariates", "team_size", "a list of strings"),
    ("study", "title", 3, "a string"),
    ("data", "time_unit", "fortnights", "one of years, months, weeks, days"),
])
def test_wrong_type_names_key_value_and_expected_type(tmp_path, table, key, value, expected):
    with pytest.raises(ims.DataError) as err:
        report(spec_with(table, key, value), tmp_path / "out.pdf")
    msg = str(err.value)
    assert f"[{table}] {key}" in msg and repr(value) in msg and expected in msg
    assert not (tmp_path / "out.pdf").exists()


def test_toml_nan_and_several_problems_at_once(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('[study]\ntitle = "x"\n[data]\ndataset = "bond2014"\n'
                    '[analysis]\nhorizon = nan\nseed = "x"\ntimes = ["a"]\n')
    with pytest.raises(ims.DataError) as err:
        load_spec(spec)
    assert len(err.value.problems) == 3


def test_output_path_that_is_a_directory(tmp_path):
    with pytest.raises(ims.DataError, match="is a directory"):
        report(BASE, tmp_path)
    assert main(["report", str(ROOT / "reports" / "norway_imr.toml"), "--out",
                 str(tmp_path), "--quiet"]) == 1


def test_data_path_that_is_a_directory(tmp_path):
    with pytest.raises(ims.DataError, match=r"\[data\] events.*not a file"):
        load_spec({"study": {"title": "t"}, "data": {"events": str(tmp_path)}})


def test_init_writes_a_commented_starter_that_loads_once_files_exist(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    assert main(["report", "--init", str(path)]) == 0
    text = path.read_text()
    for key in KEYS:
        assert f"{key.name} =" in text, key.name
    assert text.count("\n#") > len(KEYS)
    # not overwritten
    assert main(["report", "--init", str(path)]) == 1
    assert "already exists" in capsys.readouterr().err
    # with the user's files in place it is a valid spec
    src = ROOT / "datasets" / "small_dates"
    for name in ("events", "covariates", "sites"):
        (tmp_path / f"{name}.csv").write_bytes((src / f"{name}.csv").read_bytes())
    spec = load_spec(path)
    assert spec.events == tmp_path / "events.csv" and spec.horizon == 6.0
    assert starter_spec() == text


def test_several_specs_in_one_command(tmp_path, capsys):
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    for p, title in ((a, "A"), (b, "B")):
        p.write_text(f'[study]\ntitle = "{title}"\n[data]\ndataset = "norway_imr"\n'
                     '[analysis]\nsections = ["summary", "bond"]\ngroup = "setting"\n')
    assert main(["report", str(a), str(b), "--quiet"]) == 0
    assert (tmp_path / "a.pdf").exists() and (tmp_path / "b.pdf").exists()
    out = tmp_path / "out"
    out.mkdir()
    assert main(["report", str(a), str(b), "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.pdf", "b.pdf"]
    assert main(["report", str(a), str(b), "--out", str(out / "x.pdf")]) == 1
    assert "must be an existing directory" in capsys.readouterr().err


def test_readme_documents_every_key():
    readme = (ROOT / "reports" / "README.md").read_text()
    assert reference_markdown() in readme
    for key in KEYS:
        assert f"`[{key.table}] {key.name}`" in readme
