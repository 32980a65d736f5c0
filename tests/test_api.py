"""The public API that DESIGN.md fixes, and the command line."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import pytest

import imrsurv as ims
from imrsurv.cli import main


def params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_design_signatures():
    assert params(ims.read_history)[:3] == ["events", "covariates", "sites"]
    assert params(ims.fit_cox)[:10] == ["data", "formula", "start", "stop", "event", "cluster",
                                        "strata", "ties", "weights", "frailty"]
    sig = inspect.signature(ims.fit_cox)
    assert sig.parameters["ties"].default == "efron"
    assert sig.parameters["start"].default is None
    assert params(ims.mcf)[:6] == ["data", "start", "stop", "event", "id", "by"]
    assert params(ims.state_probabilities)[:3] == ["data", "times", "by"]
    assert inspect.signature(ims.bond_status).parameters["horizon"].default == 6.0
    dt = inspect.signature(ims.fit_discrete_time).parameters
    assert dt["link"].default == "cloglog" and dt["cluster"].default == "site"
    assert issubclass(ims.DataError, Exception)


def test_design_calls_on_shipped_data():
    hist = ims.datasets.load_bond2014()
    for scheme in ("ag", "pwp-tt", "pwp-gt", "wlw", "first"):
        cp = hist.counting_process(scheme=scheme)
        assert {"site", "start", "stop", "event", "episode"} <= set(cp.columns)
    assert hist.status_at(6.0).value_counts().to_dict() == {
        "sustained": 23, "discontinued": 18, "restarted": 8, "censored": 0}
    res = ims.fit_cox(hist.counting_process("ag"), "team_size + training_access", start="start",
                      stop="stop", event="event", cluster="site")
    assert list(res.params.index) == ["team_size", "training_access"]
    assert (res.se != res.se_naive).all()
    assert isinstance(res.loglik, float)
    assert {"coef", "exp(coef)", "z", "p"} <= set(res.summary.columns)
    norway = ims.datasets.load_norway_imr()
    assert norway.n_sites == 9


def test_cli_validate_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.csv"
    good.write_text("site,time,event\nA,0,start\nA,2,discontinue\nA,6,end\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("site,time,event\nA,0,start\nA,2,restart\nA,6,end\n")
    assert main(["validate", str(good)]) == 0
    assert "checks passed" in capsys.readouterr().out
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert 'line 3, site "A": restart while active' in out


def test_cli_describe_bond(capsys):
    assert main(["describe", "--dataset", "bond2014", "--horizon", "6"]) == 0
    out = capsys.readouterr().out
    for status, n in (("sustained", 23), ("restarted", 8), ("discontinued", 18)):
        assert re.search(rf"^{status}\s+{n}\s", out, re.M), status


@pytest.mark.parametrize("command", ["validate", "describe", "report", "replicate", "simulate",
                                     "power"])
def test_every_command_has_help(command):
    run = subprocess.run([sys.executable, "-m", "imrsurv.cli", command, "--help"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "usage: imrsurv " + command in run.stdout


def test_report_callable_after_importing_the_subpackage():
    """Importing imrsurv.report binds the package on imrsurv, shadowing the function."""
    import subprocess
    import sys

    code = ("import imrsurv as ims, imrsurv.report, inspect; "
            "assert callable(ims.report); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_every_ims_name_in_the_readme_exists():
    """README examples and tables call ``ims.<name>``: each must resolve."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "README.md").read_text()
    names = sorted(set(re.findall(r"\bims\.([A-Za-z_][\w.]*[\w])", text)))
    assert len(names) > 25
    missing = []
    for name in names:
        obj = ims
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            missing.append(name)
    assert not missing, missing
