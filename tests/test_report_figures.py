"""Figures as they reach the PDF: hatching survives the copy into the report, vector paths
and no fonts, line styles and greyscale, bands,
the forest plot with a term that is not estimable, the KM at-risk row."""

from __future__ import annotations

import subprocess

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from reportlab.pdfgen.canvas import Canvas  # noqa: E402

import imrsurv as ims  # noqa: E402
from imrsurv.models.km import km_first  # noqa: E402
from imrsurv.plots import palette, plot_km, plot_mcf, plot_state_probabilities  # noqa: E402
from imrsurv.report import figures  # noqa: E402


@pytest.fixture(autouse=True)
def _theme():
    figures.style()
    yield
    plt.close("all")


def as_pdf_png(fig, tmp_path, dpi: int = 100) -> np.ndarray:
    """The figure through the report's own path (matplotlib PDF -> form XObject in a
    reportlab page), rasterised, grey."""
    pdf = figure_page(fig, tmp_path)
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", "-singlefile", str(pdf),
                    str(tmp_path / "fig")], check=True)
    return np.asarray(Image.open(tmp_path / "fig.png").convert("L"), dtype=int)


def figure_page(fig, tmp_path):
    """A reportlab page holding just the figure as the report draws it."""
    flow = figures.drawing(fig)
    pdf = tmp_path / "fig.pdf"
    canv = Canvas(str(pdf), pagesize=(flow.width, flow.height), invariant=1)
    flow.drawOn(canv, 0, 0)
    canv.save()
    return pdf


def test_figures_are_vector_paths_without_fonts(tmp_path):
    ax = plot_state_probabilities(flat_probs(), title="Title")
    pdf = figure_page(ax.figure, tmp_path)
    images = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True,
                            check=True)
    assert images.stdout.splitlines()[2:] == []         # nothing rasterised
    reader = __import__("pypdf").PdfReader(pdf)
    forms = reader.pages[0]["/Resources"]["/XObject"]
    assert len(forms) == 1
    form = next(iter(forms.values())).get_object()
    assert form["/Subtype"] == "/Form" and b" re" in form.get_data()  # matplotlib's paths
    res = form["/Resources"].get_object()
    assert len(res.get("/Font", {}).get_object()) == 0  # text drawn as paths, no fonts


def test_figure_form_is_the_same_bytes_every_time(tmp_path):
    data = [figures.figure_pdf(plot_state_probabilities(flat_probs(), title="").figure)
            for _ in range(2)]
    assert data[0] == data[1]
    assert figures.PdfFigure(data[0]).name == figures.PdfFigure(data[1]).name


def runs(line: np.ndarray, dark: int = 110) -> int:
    """Number of dark runs along a pixel line."""
    d = line < dark
    return int(np.sum(d[1:] & ~d[:-1]) + d[0])


def flat_probs() -> pd.DataFrame:
    t = np.linspace(0, 6, 7)
    rows = [(x, s, p) for x in t for s, p in (("sustained", 0.4), ("restarted", 0.3),
                                              ("discontinued", 0.3))]
    return pd.DataFrame(rows, columns=["time", "state", "probability"])


def test_state_hatching_survives_into_the_pdf(tmp_path):
    ax = plot_state_probabilities(flat_probs(), title="")
    img = as_pdf_png(ax.figure, tmp_path)
    # restarted (fill grey 0.68 = 173) carries horizontal lines: a vertical scan through the
    # middle of the plot meets several dark runs inside the restarted band
    mid = img[:, img.shape[1] // 2]
    band = np.flatnonzero(np.abs(mid - 173) <= 6)
    assert len(band) > 20, "restarted band not found"
    assert runs(mid[band.min():band.max() + 1]) >= 5
    # discontinued (fill 0.93 = 237) carries vertical lines: a horizontal scan meets many
    rows = [r for r in range(img.shape[0]) if np.sum(np.abs(img[r] - 237) <= 4) > img.shape[1] // 3]
    assert rows, "discontinued band not found"
    line = img[rows[len(rows) // 2]]
    inside = np.flatnonzero(np.abs(line - 237) <= 4)
    assert runs(line[inside.min():inside.max() + 1]) >= 20


def test_state_legend_keys_are_hatched_too(tmp_path):
    ax = plot_state_probabilities(flat_probs(), title="")
    leg = ax.get_legend()
    assert [t.get_text() for t in leg.get_texts()][:3] == [
        "Sustained (active, never stopped)", "Restarted (active again)", "Discontinued"]
    # the hatching of the legend keys is plain lines (as the areas: no backend-specific pattern)
    buf = __import__("io").BytesIO()
    ax.figure.savefig(buf, format="svg")
    assert b"<pattern" not in buf.getvalue()


def test_groups_differ_by_line_style_and_grey_level():
    h = ims.datasets.load_bond2014()
    res = km_first(h, by="practice", times=[1, 2, 3, 4, 5, 6])
    ax = plot_km(res)
    lines = [ln for ln in ax.get_lines() if ln.get_label() in res.fitters]
    assert len(lines) == 5
    # the dash pattern as drawn (get_linestyle() calls every custom pattern "--")
    assert len({str(ln._unscaled_dash_pattern) for ln in lines}) == 5
    grey = [0.299 * r + 0.587 * g + 0.114 * b for r, g, b in palette(5)]
    assert np.all(np.diff(grey) > 0.08)  # lightness rises step by step: apart in greyscale
    # five groups: no overlapping confidence bands (the table carries the CIs)
    assert not any(type(c).__name__.endswith("PolyCollection") for c in ax.collections)
    one = plot_km(km_first(h, times=[1, 2]), ax=plt.subplots()[1])
    assert any(type(c).__name__.endswith("PolyCollection") for c in one.collections)


def test_bands_only_for_at_most_two_groups():
    h = ims.datasets.load_bond2014()
    curve = ims.mcf(h, by="practice")
    fig, ax = plt.subplots()
    plot_mcf(curve, ax=ax)
    assert sum(type(c).__name__.endswith("PolyCollection") for c in ax.collections) == 0
    fig, ax = plt.subplots()
    plot_mcf(ims.mcf(h), ax=ax)
    assert sum(type(c).__name__.endswith("PolyCollection") for c in ax.collections) == 1


def test_km_at_risk_row_is_the_table():
    h = ims.datasets.load_bond2014()
    times = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    res = km_first(h, by="practice", times=times)
    ax = res.plot(times=[0.0, *times])
    drawn = {tuple(t.get_gid().split("|")[1:]): int(t.get_text()) for t in ax.texts
             if (t.get_gid() or "").startswith("at-risk|")}
    table = res.table.set_index(["group", "time"])["n_risk"]
    for (g, t), n in table.items():
        assert drawn[(g, f"{t:g}")] == n
    assert drawn[("ACT", "6")] == 6  # issue 10: the figure said 0 where the table said 6


def forest_table(diverging: bool) -> pd.DataFrame:
    rows = []
    for m in ("AG", "PWP-GT"):
        rows += [{"model": m, "term": "recent_leader_change",
                  "HR": 5.6e17 if diverging else 2.1, "lower": 1e-3 if diverging else 1.1,
                  "upper": np.inf if diverging else 4.0, "estimable": not diverging},
                 {"model": m, "term": "team_size", "HR": 0.9, "lower": 0.7, "upper": 1.1,
                  "estimable": True}]
    return pd.DataFrame(rows)


def test_forest_shows_a_diverging_term_as_not_estimable_with_legible_ticks():
    ax = figures.forest(forest_table(diverging=True))
    lo, hi = ax.get_xlim()
    assert 0.1 < lo < 1 < hi < 10  # the axis follows the estimable terms, not 5.6e17
    ticks = [float(t) for t in ax.get_xticks()]
    assert 2 <= len(ticks) <= 7
    assert [t.get_text() for t in ax.texts].count("not estimable") == 2
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Recent leadership change (1 yr)",
                                                            "Team size"]
    # tick labels do not overlap once drawn
    fig = ax.figure
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:], strict=False))


def test_forest_draws_estimable_terms_as_points():
    ax = figures.forest(forest_table(diverging=False))
    assert "not estimable" not in [t.get_text() for t in ax.texts]
    lo, hi = ax.get_xlim()
    assert lo < 0.7 and hi > 4.0
