"""Report sections in parallel lanes: the plan, the forked run, and the same PDF bytes."""

from __future__ import annotations

import os
import pickle
import warnings

import matplotlib.pyplot as plt
import pytest
from pypdf import PdfReader

from imrsurv.report import build, figures, lanes
from imrsurv.simulate.cohort import simulate_cohort, write_cohort

BOND_SECTIONS = ["summary", "bond", "km", "mcf", "states", "recurrent", "ph", "discrete",
                 "frailty"]
needs_fork = pytest.mark.skipif(not lanes.can_fork(), reason="os.fork is used on Linux only")


def test_plan_keeps_dependent_sections_together_and_balances_the_rest():
    lanes_ = lanes.plan(BOND_SECTIONS, 2, build.SECTION_COST, build.SECTION_AFTER)
    assert len(lanes_) == 2
    assert sorted(n for lane in lanes_ for n in lane) == sorted(BOND_SECTIONS)
    (together,) = [lane for lane in lanes_ if "ph" in lane]
    assert "recurrent" in together
    for lane in lanes_:  # each lane keeps the report's order
        assert lane == sorted(lane, key=BOND_SECTIONS.index)
    loads = [sum(build.SECTION_COST[n] for n in lane) for lane in lanes_]
    assert loads[0] <= loads[1]  # this process takes the lighter lane (it also writes the PDF)
    assert max(loads) < 0.6 * sum(loads)


def test_plan_with_one_job_or_one_group_is_one_lane():
    assert lanes.plan(BOND_SECTIONS, 1, {}, {}) == [BOND_SECTIONS]
    assert lanes.plan(["recurrent", "ph"], 4, {}, {"ph": "recurrent"}) == [["recurrent", "ph"]]
    # a dependency on a section not asked for is no constraint
    assert sorted(map(len, lanes.plan(["ph", "km"], 2, {}, {"ph": "recurrent"}))) == [1, 1]
    # transitive: c after b after a
    (lane,) = [x for x in lanes.plan(list("abcd"), 3, {"a": 1, "d": 5}, {"c": "b", "b": "a"})
               if "a" in x]
    assert lane == ["a", "b", "c"]


@needs_fork
def test_run_returns_results_in_order_and_computes_lanes_in_children():
    parent = os.getpid()
    out = lanes.run(list("abcdef"), lambda n: (n, os.getpid()), jobs=2,
                    cost={"a": 3.0, "b": 1.0, "c": 1.0, "d": 1.0})
    assert [n for n, _ in out] == list("abcdef")
    pids = {n: pid for n, pid in out}
    assert lanes.last_run.forked == 1 and lanes.last_run.rerun == {}
    child_lane = lanes.last_run.lanes[1]
    assert all(pids[n] != parent for n in child_lane)
    assert all(pids[n] == parent for n in lanes.last_run.lanes[0])


@needs_fork
def test_a_failing_child_lane_is_rerun_here_and_says_why():
    parent = os.getpid()

    def step(n):
        if os.getpid() != parent:
            raise ValueError(f"child cannot do {n}")
        return n.upper()

    assert lanes.run(list("abcd"), step, jobs=2) == list("ABCD")
    (why,) = lanes.last_run.rerun.values()
    assert "ValueError: child cannot do" in why


@needs_fork
def test_an_unpicklable_result_is_rerun_here():
    parent = os.getpid()
    out = lanes.run(list("ab"), lambda n: (lambda: n) if os.getpid() != parent else n, jobs=2)
    assert out == ["a", "b"]
    assert len(lanes.last_run.rerun) == 1


def test_a_genuine_error_propagates():
    def step(n):
        raise KeyError(n)

    with pytest.raises(KeyError):
        lanes.run(list("ab"), step, jobs=2)


def test_pdf_figure_pickles_to_the_same_drawing():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    f = figures.drawing(fig)
    g = pickle.loads(pickle.dumps(f))
    assert (g.name, g.width, g.height, g._box) == (f.name, f.width, f.height, f._box)
    assert g._page["/Contents"].get_object().get_data() == \
        f._page["/Contents"].get_object().get_data()


@needs_fork
@pytest.mark.parametrize("spec", ["bond2014", "small_dates", "bond_causes"])
def test_parallel_and_serial_reports_are_byte_identical(tmp_path, spec):
    path = build.Path(__file__).resolve().parents[1] / "reports" / f"{spec}.toml"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # forking must not add a warning to the report
        build.report(path, tmp_path / "serial.pdf", command="cmd", jobs=1)
        assert lanes.last_run.forked == 0
        build.report(path, tmp_path / "parallel.pdf", command="cmd", jobs=2)
    assert lanes.last_run.forked == 1 and lanes.last_run.rerun == {}
    assert (tmp_path / "serial.pdf").read_bytes() == (tmp_path / "parallel.pdf").read_bytes()


@needs_fork
def test_nine_sites_with_degraded_sections_give_the_same_pdf_in_parallel(tmp_path):
    """9 sites, 3 discontinuations: sections that cannot be estimated say why, in either lane."""
    c = simulate_cohort(9, 6, seed=1, entry="common")
    write_cohort(c, tmp_path)
    spec = {"study": {"title": "small"},
            "data": {k: str(tmp_path / f"{k}.csv") for k in ("events", "covariates", "sites")},
            "analysis": {"sections": BOND_SECTIONS}}
    build.report(spec, tmp_path / "a.pdf", command="cmd", jobs=1)
    build.report(spec, tmp_path / "b.pdf", command="cmd", jobs=3)
    assert lanes.last_run.forked == 2 and lanes.last_run.rerun == {}
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()
    text = " ".join(p.extract_text() for p in PdfReader(tmp_path / "b.pdf").pages)
    assert "Sections and models not estimated" in " ".join(text.split())
