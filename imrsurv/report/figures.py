"""matplotlib figures as vector drawings for the PDF, written deterministically.

A figure is saved with matplotlib's own PDF backend (text drawn as paths, no
date, no producer version) and its one page is placed in the report as a PDF
form XObject scaled to the text width (:class:`PdfFigure`). The figure's
drawing operators and resources (marker XObjects, hatch patterns, alpha
states) are copied as they are, so the plot stays vector and looks as
matplotlib drew it.

The earlier route (SVG read back by svglib into reportlab shapes, then drawn
by reportlab) re-interpreted every path twice and took about a second of a
Bond report's build for five figures; copying the page costs milliseconds.
Text is drawn as paths, as before, so figures add no fonts to the report.
"""

from __future__ import annotations

import hashlib
import io

import matplotlib
import matplotlib.patheffects
import matplotlib.text
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from pypdf import PdfReader  # noqa: E402
from pypdf.generic import (  # noqa: E402
    ArrayObject,
    DictionaryObject,
    IndirectObject,
    NameObject,
    PdfObject,
    StreamObject,
)
from reportlab.pdfbase import pdfdoc  # noqa: E402
from reportlab.platypus import Flowable  # noqa: E402

from .. import plots  # noqa: E402
from ..labels import label  # noqa: E402
from .pdf import TEXT_WIDTH  # noqa: E402

RC = {
    **plots.RC,
    "figure.dpi": 100,
}
# no CreationDate and no matplotlib version in the figure's own info (it is not copied,
# but the bytes name the form, so they must not change between runs)
_METADATA = {"Creator": "imrsurv", "Producer": "imrsurv", "CreationDate": None}
# stream filters the copy can decode and re-compress; matplotlib writes only these
_FLATE = {"/FlateDecode"}


def style() -> None:
    """The one theme of every figure (:func:`imrsurv.plots.theme`) plus the PDF settings."""
    plots.theme()
    matplotlib.rcParams.update(RC)


def figure_pdf(fig: matplotlib.figure.Figure) -> bytes:
    """The figure as a one-page PDF (tight bounding box, text as paths); closes it."""
    as_path = [matplotlib.patheffects.Normal()]
    for text in fig.findobj(matplotlib.text.Text):
        # a path effect makes the renderer draw the glyphs as paths (no fonts embedded)
        text.set_path_effects(as_path)
    buf = io.BytesIO()
    # tick labels made while saving take the rc value
    with matplotlib.rc_context({**RC, "path.effects": as_path}):
        fig.savefig(buf, format="pdf", metadata=_METADATA, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def drawing(fig: matplotlib.figure.Figure, width: float = TEXT_WIDTH) -> PdfFigure:
    """The figure as a flowable ``width`` points wide (vector, see :class:`PdfFigure`); closes it."""
    return PdfFigure(figure_pdf(fig), width)


class PdfFigure(Flowable):
    """The first page of a PDF drawn as a form XObject, scaled to ``width`` points.

    The form is named by the SHA-256 of the PDF bytes, so the same figure gets
    the same name in every build, and it is written once per document however
    often it is drawn (reportlab's ``multiBuild`` draws into a fresh document
    on each pass, so the form is rebuilt for each).
    """

    def __init__(self, data: bytes, width: float = TEXT_WIDTH) -> None:
        super().__init__()
        self._data = data
        self._page = PdfReader(io.BytesIO(data)).pages[0]
        x0, y0, x1, y1 = (float(v) for v in self._page.mediabox)
        self._box = (x0, y0, x1, y1)
        self._scale = width / (x1 - x0)
        self.width, self.height = width, (y1 - y0) * self._scale
        self.name = "imrsurvFig" + hashlib.sha256(data).hexdigest()[:16]

    def __getstate__(self) -> dict:
        # the parsed page refers back to its reader: pickle the PDF bytes and parse again
        return {k: v for k, v in self.__dict__.items() if k != "_page"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._page = PdfReader(io.BytesIO(self._data)).pages[0]

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        canv = self.canv
        if not canv.hasForm(self.name):
            canv._doc.addForm(self.name, _form(canv._doc, self._page, self._box))
        canv.saveState()
        canv.scale(self._scale, self._scale)
        canv.translate(-self._box[0], -self._box[1])
        canv.doForm(self.name)
        canv.restoreState()


def _form(doc: pdfdoc.PDFDocument, page, box: tuple[float, ...]) -> pdfdoc.PDFStream:
    """A Form XObject (PDF 1.7, section 8.10) with the page's content and resources."""
    contents = page["/Contents"].get_object()
    parts = contents if isinstance(contents, ArrayObject) else [contents]
    content = b"\n".join(_stream_data(p.get_object()) for p in parts)
    memo: dict[tuple[int, int], object] = {}
    head = pdfdoc.PDFDictionary({
        "Type": "/XObject", "Subtype": "/Form", "FormType": 1,
        "BBox": pdfdoc.PDFArray(list(box)),
        "Resources": _rl(doc, page["/Resources"], memo)})
    return pdfdoc.PDFStream(head, content, filters=[pdfdoc.PDFZCompress])


def _stream_data(stream: StreamObject) -> bytes:
    filters = stream.get("/Filter")
    names = [] if filters is None else [str(f) for f in (
        filters if isinstance(filters, ArrayObject) else [filters])]
    if not set(names) <= _FLATE:
        raise ValueError(f"figure PDF stream with filter {names}: only FlateDecode is copied")
    return stream.get_data()


def _rl(doc: pdfdoc.PDFDocument, obj: PdfObject, memo: dict) -> object:
    """A pypdf object as the reportlab object that writes the same PDF value.

    Indirect objects become reportlab references, converted once each
    (``memo``); streams are decoded and re-compressed by reportlab; numbers,
    names and strings are written exactly as pypdf reads them.
    """
    if isinstance(obj, IndirectObject):
        key = (obj.idnum, obj.generation)
        if key not in memo:
            target = obj.get_object()
            if isinstance(target, (DictionaryObject, ArrayObject)):
                memo[key] = None  # a reference cycle would recurse for ever
                memo[key] = doc.Reference(_rl(doc, target, memo))
            else:
                memo[key] = _rl(doc, target, memo)
        if memo[key] is None:
            raise ValueError("figure PDF with a reference cycle in its resources")
        return memo[key]
    if isinstance(obj, StreamObject):
        keep = {k: v for k, v in obj.items() if k not in ("/Length", "/Filter", "/DecodeParms")}
        head = pdfdoc.PDFDictionary({k[1:]: _rl(doc, v, memo) for k, v in keep.items()})
        return pdfdoc.PDFStream(head, _stream_data(obj), filters=[pdfdoc.PDFZCompress])
    if isinstance(obj, DictionaryObject):
        return pdfdoc.PDFDictionary({k[1:]: _rl(doc, v, memo) for k, v in obj.items()})
    if isinstance(obj, ArrayObject):
        return pdfdoc.PDFArrayCompact([_rl(doc, v, memo) for v in obj])
    if isinstance(obj, NameObject):
        return pdfdoc.PDFName(str(obj)[1:])
    buf = io.BytesIO()
    obj.write_to_stream(buf)  # numbers, strings, booleans, null: the bytes pypdf read
    return buf.getvalue()


# hazard ratios beyond these bounds are drawn as "not estimable" at the axis edge
HR_RANGE = (1e-3, 1e3)


def forest(table, ax=None, ci: str = "95% robust CI"):
    """Hazard ratios with CIs, one row per term and model, on a log axis.

    ``table`` has columns ``model, term, HR, lower, upper`` and optionally
    ``estimable`` (bool); models are told apart by marker shape and by the
    palette's lightness, so the plot reads in grayscale. A term that is not
    estimable (diverging coefficient, or HR/limits outside ``HR_RANGE``) is
    not drawn as a number: an open arrow at the axis edge marks it and its
    row says "not estimable".
    """
    import numpy as np

    models = list(dict.fromkeys(table["model"]))
    terms = list(dict.fromkeys(table["term"]))
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 0.5 * len(terms) * max(len(models), 1) ** 0.5 + 1.5))
    ok = table[_estimable(table)]
    lo = float(np.nanmin(ok["lower"].clip(lower=HR_RANGE[0]))) if len(ok) else 0.5
    hi = float(np.nanmax(ok["upper"].clip(upper=HR_RANGE[1]))) if len(ok) else 2.0
    lo, hi = min(lo, 0.8), max(hi, 1.25)
    candidates = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
    ticks = [t for t in candidates if lo / 1.5 <= t <= hi * 1.5]
    if len(ticks) > 7:
        ticks = [t for t in ticks if f"{t:g}"[0] in "15"]
    left, right = lo / 1.6, hi * 1.6
    colours = plots.palette(len(models))
    markers = ["o", "s", "^", "D", "v", "P"]
    step = 0.7 / max(len(models), 1)
    flagged = False
    for k, m in enumerate(models):
        sub = table[table["model"] == m].set_index("term").reindex(terms)
        good = _estimable(sub.reset_index()).to_numpy()
        y = np.arange(len(terms)) + (k - (len(models) - 1) / 2) * step
        hr = sub["HR"].to_numpy(float)
        g = good & np.isfinite(hr)
        # a very wide interval is cut at the axis edge (its numbers are in the table)
        lower = np.clip(np.nan_to_num(sub["lower"].to_numpy(float), nan=left), left, right)
        upper = np.clip(np.nan_to_num(sub["upper"].to_numpy(float), nan=right), left, right)
        ax.errorbar(hr[g], y[g], xerr=[hr[g] - lower[g], upper[g] - hr[g]],
                    fmt=markers[k % len(markers)], capsize=2, label=m, color=colours[k],
                    mfc=colours[k] if k % 2 == 0 else "white", ms=5, lw=1.2)
        for yy, h in zip(y[~g], hr[~g], strict=True):
            flagged = True
            edge = right if not np.isfinite(h) or h >= 1 else left
            ax.plot([edge], [yy], marker=">" if edge == right else "<", ls="none",
                    mfc="white", mec=colours[k], ms=6)
            ax.text(edge / 1.12 if edge == right else edge * 1.12, yy, "not estimable",
                    ha="right" if edge == right else "left", va="center", fontsize=7.5,
                    color="0.2")
    ax.axvline(1.0, color="0.3", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_yticks(range(len(terms)), [label(t) for t in terms])
    ax.invert_yaxis()
    ax.set_xlabel(f"Hazard ratio (log scale), {ci}"
                  + ("; arrows: not estimable (monotone likelihood)" if flagged else ""))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(len(models), 4),
              frameon=False)
    ax.figure.tight_layout()
    return ax


def _estimable(table):
    """True where a row's HR is a finite number inside ``HR_RANGE`` (and ``estimable``)."""
    import numpy as np

    hr = table["HR"].to_numpy(float)
    ok = np.isfinite(hr) & (hr > HR_RANGE[0]) & (hr < HR_RANGE[1])
    if "estimable" in table:
        ok &= table["estimable"].to_numpy(bool)
    import pandas as pd

    return pd.Series(ok, index=table.index)
