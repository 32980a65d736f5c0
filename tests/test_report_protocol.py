"""Display and command-line protocol of the parts this suite's owner keeps: package dir,
ims.simulate's signature, progress and workers without Dask, power over several --hr."""

from __future__ import annotations

import inspect

import pandas as pd
import pytest

import imrsurv as ims
from imrsurv.cli import main
from imrsurv.simulate import parallel


def test_dir_lists_the_api_not_the_helpers():
    for mod in (ims, ims.models if hasattr(ims, "models") else ims):
        names = dir(mod)
        assert "annotations" not in names and "lazy_exports" not in names
    names = dir(ims)
    for api in ("fit_cox", "km_first", "read_history", "simulate", "DataError", "report"):
        assert api in names
    import imrsurv.simulate as sim

    assert "annotations" not in dir(sim) and "power" in dir(sim)


def test_simulate_shows_its_signature_and_docstring():
    sig = inspect.signature(ims.simulate)
    assert list(sig.parameters)[:2] == ["n_sites", "years"]
    assert sig.parameters["seed"].kind is inspect.Parameter.KEYWORD_ONLY
    assert ims.simulate.__doc__.startswith("simulate(n_sites")
    assert "Simulate a cohort of programme histories" in ims.simulate.__doc__
    h = ims.simulate(4, 2.0, seed=5)
    assert h.n_sites == 4


def _square(x):
    return x * x


def test_workers_without_dask_fail_or_say_so(monkeypatch):
    monkeypatch.setattr(parallel, "dask_available", lambda: False)
    with pytest.raises(parallel.DaskNotInstalled, match="workers=2 needs Dask"):
        parallel.run_tasks(_square, [1, 2, 3], workers=2, progress=False)
    run = parallel.run_tasks(_square, [1, 2, 3], progress=False)
    assert run.results == [1, 4, 9]
    assert run.backend == "this process (one worker: Dask is not installed)"
    run = parallel.run_tasks(_square, [1, 2], workers=1, progress=False)
    assert run.backend == "this process"


def test_power_cli_workers_without_dask_is_an_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(parallel, "dask_available", lambda: False)
    rc = main(["power", "--sites", "8", "--years", "4", "--hr", "2", "--replicates", "2",
               "--workers", "2", "--out", str(tmp_path / "p.csv"), "--quiet"])
    assert rc == 2
    assert "workers=2 needs Dask" in capsys.readouterr().err


def test_progress_is_quiet_off_a_terminal(capsys):
    bar = parallel._Progress(3, True, "x")  # pytest's stderr is not a terminal
    bar.update()
    bar.close()
    assert bar.bar is None and not bar.text
    assert capsys.readouterr().err == ""


def test_power_over_several_hazard_ratios_draws_the_curve(tmp_path, capsys):
    out = tmp_path / "p.csv"
    rc = main(["power", "--sites", "10", "--years", "4", "--hr", "1", "2", "--replicates", "3",
               "--workers", "1", "--seed", "3", "--out", str(out), "--quiet"])
    assert rc == 0
    summary = pd.read_csv(tmp_path / "p_summary.csv")
    assert summary["hr"].tolist() == [1.0, 2.0]
    png = tmp_path / "p_power.png"
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    assert "power curve over --hr" in capsys.readouterr().out
    assert main(["power", "--sites", "10", "--years", "4", "--hr", "0", "--replicates", "2",
                 "--out", str(out), "--quiet"]) == 2


def test_report_progress_bar_only_on_request(tmp_path, capsys):
    spec = {"study": {"title": "t"}, "data": {"dataset": "norway_imr"},
            "analysis": {"sections": ["summary"], "group": "setting"}}
    ims.report(spec, tmp_path / "a.pdf", progress=False)
    assert capsys.readouterr().err == ""
    ims.report(spec, tmp_path / "b.pdf", progress=True)
    assert "report b.pdf" in capsys.readouterr().err
    assert (tmp_path / "a.pdf").read_bytes() != b""


def test_power_cli_test_choice(tmp_path, capsys):
    rc = main(["power", "--sites", "10", "--years", "4", "--hr", "2", "--replicates", "2",
               "--test", "wlad", "--out", str(tmp_path / "p.csv"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown --test 'wlad'" in err and "firth-lrt" in err
