"""Shipped datasets: reproducible bytes, published numbers, format rules, loaders."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imrsurv import datasets

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "datasets"
GENERATED = {
    "bond2014": ("events.csv", "covariates.csv", "sites.csv", "panel.csv"),
    "norway_imr": ("events.csv", "covariates.csv", "sites.csv", "panel.csv", "SYNTHETIC.txt"),
}
SCRIPTS = {"bond2014": "make_bond2014.py", "norway_imr": "make_norway_imr.py"}
HORIZON = 6.0


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read(name: str, file: str) -> pd.DataFrame:
    return pd.read_csv(DATA / name / file, dtype={"site": str})


def status_from_events(events: pd.DataFrame, horizon: float = HORIZON) -> pd.Series:
    """Bond category per site at ``horizon``, straight from the event log."""
    out = {}
    for site, g in events.sort_values(["site", "time"], kind="stable").groupby("site"):
        seen = g.loc[(g["time"] <= horizon) & (g["event"] != "end"), "event"].tolist()
        if "discontinue" not in seen:
            out[site] = "sustained"
        elif seen[-1] == "restart":
            out[site] = "restarted"
        else:
            out[site] = "discontinued"
    return pd.Series(out, name="status")


# --------------------------------------------------------------------------- bytes


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_rerun_is_byte_identical(name: str, tmp_path: Path) -> None:
    script = DATA / name / SCRIPTS[name]
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(GENERATED[name])
    for file in GENERATED[name]:
        assert sha256(tmp_path / file) == sha256(DATA / name / file), f"{name}/{file} differs"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_files_use_lf_line_endings(name: str) -> None:
    for file in GENERATED[name]:
        raw = (DATA / name / file).read_bytes()
        assert b"\r" not in raw and raw.endswith(b"\n")


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_event_log_rules(name: str) -> None:
    ev = read(name, "events.csv")
    assert list(ev.columns[:3]) == ["site", "time", "event"]
    assert ev["event"].isin(["start", "discontinue", "restart", "end"]).all()
    assert np.issubdtype(ev["time"].dtype, np.floating)
    sites = read(name, "sites.csv")
    assert set(ev["site"]) == set(sites["site"])
    for site, g in ev.groupby("site", sort=False):
        events, times = g["event"].tolist(), g["time"].to_numpy()
        assert events[0] == "start" and times[0] == 0.0, site
        assert events[-1] == "end" and times[-1] == HORIZON, site
        assert events.count("start") == 1 and events.count("end") == 1, site
        middle = events[1:-1]
        expected = ["discontinue" if i % 2 == 0 else "restart" for i in range(len(middle))]
        assert middle == expected, f"{site}: not alternating: {middle}"
        assert (np.diff(times) > 0).all(), f"{site}: times not strictly increasing"
    if "practice" in ev.columns:
        merged = ev.merge(sites[["site", "practice"]], on="site", suffixes=("", "_site"))
        assert (merged["practice"] == merged["practice_site"]).all()


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_covariate_log_rules(name: str) -> None:
    cov = read(name, "covariates.csv")
    assert list(cov.columns) == [
        "site",
        "time",
        "leadership_change",
        "team_size",
        "training_access",
    ]
    assert cov.notna().all().all()
    for col in ("leadership_change", "team_size", "training_access"):
        assert np.issubdtype(cov[col].dtype, np.integer), col
    assert (cov["team_size"] >= 0).all()
    assert cov["training_access"].isin([0, 1]).all()
    assert cov["leadership_change"].isin([0, 1]).all()
    sites = read(name, "sites.csv")
    assert set(cov["site"]) == set(sites["site"])
    for site, g in cov.groupby("site", sort=False):
        times = g["time"].to_numpy()
        assert times[0] == 0.0, f"{site}: no row at time 0"
        assert g["leadership_change"].iloc[0] == 0, site
        assert (np.diff(times) > 0).all(), f"{site}: covariate times not increasing"
        assert times[-1] < HORIZON
    assert cov["leadership_change"].sum() > 0


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_panel_matches_event_and_covariate_logs(name: str) -> None:
    panel = read(name, "panel.csv")
    ev, cov = read(name, "events.csv"), read(name, "covariates.csv")
    assert list(panel.columns[:3]) == ["site", "year", "active"]
    n_sites = ev["site"].nunique()
    assert len(panel) == 6 * n_sites
    assert sorted(panel["year"].unique()) == [1, 2, 3, 4, 5, 6]
    assert panel["active"].isin([0, 1]).all()
    for (site, year), row in panel.set_index(["site", "year"]).iterrows():
        g = ev[(ev["site"] == site) & (ev["time"] <= year) & (ev["event"] != "end")]
        assert row["active"] == int(g["event"].iloc[-1] in ("start", "restart"))
        c = cov[(cov["site"] == site) & (cov["time"] <= year)].iloc[-1]
        assert row["team_size"] == c["team_size"]
        assert row["training_access"] == c["training_access"]
        lc = cov[(cov["site"] == site) & (cov["time"] > year - 1) & (cov["time"] <= year)]
        assert row["leadership_change"] == int(lc["leadership_change"].sum() > 0)


# --------------------------------------------------------------------------- bond2014


def test_bond2014_status_split_from_events() -> None:
    status = status_from_events(read("bond2014", "events.csv"))
    assert len(status) == 49
    assert status.value_counts().to_dict() == {
        "sustained": 23,
        "discontinued": 18,
        "restarted": 8,
    }


def test_bond2014_cohort_shape() -> None:
    ev = read("bond2014", "events.csv")
    sites = read("bond2014", "sites.csv")
    assert len(sites) == 49 and sites["site"].is_unique
    counts = sites["practice"].value_counts()
    assert set(counts.index) == {"ACT", "SE", "IDDT", "FPE", "IMR"}
    assert counts.between(9, 11).all()
    assert sites["state"].nunique() == 8
    assert set(sites["financing"]) <= {"medicaid_billable", "grant", "mixed"}
    assert sites["supervision"].isin([0, 1]).all()
    assert sites["fidelity_monitoring"].isin([0, 1]).all()
    assert sites["baseline_fidelity"].between(3.0, 5.0).all()
    restarts = ev[ev["event"] == "restart"].groupby("site").size()
    status = status_from_events(ev)
    # some sites restarted more than once; some discontinued sites had restarted before
    assert ((restarts >= 2) & (status.reindex(restarts.index) == "restarted")).sum() >= 2
    assert (status.reindex(restarts.index) == "discontinued").sum() >= 2


def test_bond2014_status_via_history() -> None:
    status = datasets.load_bond2014().status_at(6.0).astype(str)
    assert status.value_counts().to_dict() == {
        "sustained": 23,
        "discontinued": 18,
        "restarted": 8,
    }
    independent = status_from_events(read("bond2014", "events.csv"))
    assert status.sort_index().to_dict() == independent.sort_index().to_dict()


def test_bond2014_panel_loader() -> None:
    panel = datasets.load_bond2014_panel()
    assert len(panel) == 49 * 6
    assert panel["site"].dtype == object
    final = panel[panel["year"] == 6]
    status = status_from_events(read("bond2014", "events.csv"))
    assert final["active"].sum() == 23 + 8
    assert (final.set_index("site")["active"] == status.ne("discontinued").astype(int)).all()


# --------------------------------------------------------------------------- norway_imr

PUBLISHED = pd.DataFrame(
    {
        "site": list("ABCDEFGHI"),
        "practice": ["IMR"] * 9,
        "setting": ["primary"] * 4 + ["specialized", "primary", "specialized"] + ["primary"] * 2,
        "practitioners": [3, 2, 5, 3, 2, 3, 2, 3, 3],
        "fidelity_12m": [4.69, 4.77, 4.69, 4.77, np.nan, 4.62, 4.62, 4.46, 4.23],
    }
)


def test_norway_sites_are_the_published_values() -> None:
    sites = read("norway_imr", "sites.csv")
    pd.testing.assert_frame_equal(sites, PUBLISHED)
    raw = (DATA / "norway_imr" / "sites.csv").read_text().splitlines()
    assert raw[5] == "E,IMR,specialized,2,NA"


def test_norway_follow_up_starts_at_published_team_size_and_tells_the_story() -> None:
    cov = read("norway_imr", "covariates.csv")
    first = cov[cov["time"] == 0.0].set_index("site")["team_size"]
    assert first.to_dict() == dict(zip(PUBLISHED["site"], PUBLISHED["practitioners"], strict=True))
    ev = read("norway_imr", "events.csv")
    status = status_from_events(ev)
    fell_apart = []
    for site, d in ev[ev["event"] == "discontinue"].groupby("site"):
        t = d["time"].iloc[0]
        team = cov[(cov["site"] == site) & (cov["time"] <= t)]["team_size"].iloc[-1]
        if first[site] >= 3 and team < 3 and status[site] == "discontinued":
            fell_apart.append(site)
    assert fell_apart, "no service whose team shrank below 3 discontinued"
    assert cov["leadership_change"].sum() > 0
    note = (DATA / "norway_imr" / "SYNTHETIC.txt").read_text()
    assert note.startswith("SYNTHETIC")
    readme = (DATA / "norway_imr" / "README.md").read_text()
    assert "synthetic" in readme.lower() and "Egeland" in readme


def test_norway_loader() -> None:
    status = datasets.load_norway_imr().status_at(6.0).astype(str)
    independent = status_from_events(read("norway_imr", "events.csv"))
    assert status.sort_index().to_dict() == independent.sort_index().to_dict()
    assert len(datasets.load_norway_imr_panel()) == 9 * 6


# --------------------------------------------------------------------------- data_path


def test_data_path_finds_checkout_folders() -> None:
    for name in SCRIPTS:
        assert datasets.data_path(name) == DATA / name
    with pytest.raises(ValueError):
        datasets.data_path("nope")


def test_data_path_prefers_installed_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = tmp_path / "_datasets"
    (installed / "bond2014").mkdir(parents=True)
    (installed / "bond2014" / "events.csv").write_text("site,time,event\n")
    monkeypatch.setattr(datasets, "_roots", lambda: [installed, DATA])
    assert datasets.data_path("bond2014") == installed / "bond2014"
    assert datasets.data_path("norway_imr") == DATA / "norway_imr"


def test_readmes_say_what_is_synthetic() -> None:
    text = (DATA / "bond2014" / "README.md").read_text()
    for phrase in ("SIMULATED", "Adm Policy Ment Health", "CC0", "make_bond2014.py", "23"):
        assert phrase in text, phrase


def test_public_api_reaches_datasets_after_plain_import() -> None:
    # DESIGN.md: `import imrsurv as ims; ims.datasets.load_bond2014()`; a fresh
    # interpreter, because this test module has already imported the submodule.
    code = "import imrsurv as ims; print(ims.datasets.load_bond2014 is not None)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- bond_causes


def test_bond_causes_rerun_is_byte_identical(tmp_path: Path) -> None:
    script = DATA / "bond_causes" / "make_bond_causes.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True)
    files = ["covariates.csv", "events.csv", "panel.csv", "sites.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    for file in files:
        assert sha256(tmp_path / file) == sha256(DATA / "bond_causes" / file), file
        raw = (DATA / "bond_causes" / file).read_bytes()
        assert b"\r" not in raw and raw.endswith(b"\n")
    for file in ("covariates.csv", "sites.csv", "panel.csv"):  # verbatim copies
        assert sha256(DATA / "bond_causes" / file) == sha256(DATA / "bond2014" / file), file


def test_bond_causes_is_bond2014_plus_causes() -> None:
    ev = read("bond_causes", "events.csv")
    base = read("bond2014", "events.csv")
    pd.testing.assert_frame_equal(ev.drop(columns="cause"), base)
    disc = ev["event"] == "discontinue"
    assert ev.loc[~disc, "cause"].isna().all()  # causes only on discontinuations
    named = ev.loc[disc, "cause"].dropna()
    assert set(named) == {"financing", "priorities", "workforce"}
    assert ev.loc[disc, "cause"].isna().sum() >= 1  # some causes are not known


def test_bond_causes_loader() -> None:
    hist = datasets.load_bond_causes()
    assert hist.causes == ("financing", "priorities", "unknown", "workforce")
    assert hist.status_at(HORIZON).value_counts().to_dict() == {
        "sustained": 23, "discontinued": 18, "restarted": 8, "censored": 0}
    text = (DATA / "bond_causes" / "README.md").read_text()
    for phrase in ("SIMULATED", "Adm Policy Ment Health", "make_bond_causes.py", "20140300"):
        assert phrase in text, phrase


# --------------------------------------------------------------------------- peterson_waves


def test_peterson_waves_rerun_is_byte_identical(tmp_path: Path) -> None:
    script = DATA / "peterson_waves" / "make_peterson_waves.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["waves.csv"]
    assert sha256(tmp_path / "waves.csv") == sha256(DATA / "peterson_waves" / "waves.csv")
    raw = (DATA / "peterson_waves" / "waves.csv").read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")


def test_peterson_waves_design() -> None:
    w = read("peterson_waves", "waves.csv")
    assert list(w.columns) == ["site", "time", "state", "supervisor_turnover"]
    assert w["site"].nunique() == 49
    assert all(list(g) == [0, 2, 4, 8] for _, g in w.groupby("site")["time"])
    assert set(w["state"]) == {"sustained", "discontinued", "restarted"}
    assert (w.loc[w["time"] == 0, "state"] == "sustained").all()
    assert (w.loc[w["time"] == 0, "supervisor_turnover"] == 0).all()
    assert w["supervisor_turnover"].isin([0, 1]).all()
    assert w.loc[w["time"] == 4, "supervisor_turnover"].sum() >= 5
    # once discontinued, a site is never "sustained" again
    for _, g in w.groupby("site"):
        states = g["state"].tolist()
        if "discontinued" in states:
            assert "sustained" not in states[states.index("discontinued"):]
    text = (DATA / "peterson_waves" / "README.md").read_text()
    for phrase in ("SIMULATED", "Peterson", "make_peterson_waves.py", "20140408", "CC0"):
        assert phrase in text, phrase


def test_peterson_waves_loader() -> None:
    waves = datasets.load_peterson_waves()
    assert waves.n_sites == 49 and len(waves.frame) == 49 * 4
    assert waves.states == ("sustained", "discontinued", "restarted")
    assert datasets.data_path("peterson_waves") == DATA / "peterson_waves"
