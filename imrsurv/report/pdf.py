"""A small reproducible PDF document on top of reportlab's platypus.

Why reportlab: its ``invariant`` mode fixes the PDF's dates and document ID
(and it honours ``SOURCE_DATE_EPOCH``), TrueType fonts are embedded as subsets,
and platypus gives tables that wrap, a table of contents and page numbers.
matplotlib's own PDF backend could make figures but not a document with tables;
fpdf2 has no multi-pass table of contents.

Fonts are the DejaVu faces that matplotlib ships, so the same font files are
embedded on every machine and Greek, Cyrillic and other non-Latin site names
render.
"""

from __future__ import annotations

import numbers
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import matplotlib
import pandas as pd
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    KeepTogether,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus.tableofcontents import TableOfContents

FONT, FONT_BOLD, FONT_MONO = "DejaVuSans", "DejaVuSans-Bold", "DejaVuSansMono"
PAGE_WIDTH, PAGE_HEIGHT = A4
MARGIN = 2.0 * cm
TEXT_WIDTH = PAGE_WIDTH - 2 * MARGIN


def _register_fonts() -> None:
    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for name, file in ((FONT, "DejaVuSans.ttf"), (FONT_BOLD, "DejaVuSans-Bold.ttf"),
                       (FONT_MONO, "DejaVuSansMono.ttf")):
        pdfmetrics.registerFont(TTFont(name, str(ttf / file)))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD)


def styles() -> dict[str, ParagraphStyle]:
    _register_fonts()
    base = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=base["BodyText"], fontName=FONT, fontSize=9.5, leading=13,
                          bulletFontName=FONT)
    return {
        "title": ParagraphStyle("title", parent=body, fontName=FONT_BOLD, fontSize=22, leading=28,
                                alignment=TA_CENTER, spaceAfter=12),
        "subtitle": ParagraphStyle("subtitle", parent=body, fontSize=12, leading=16, alignment=TA_CENTER),
        "h1": ParagraphStyle("h1", parent=body, fontName=FONT_BOLD, fontSize=15, leading=19,
                             spaceBefore=6, spaceAfter=8),
        "h2": ParagraphStyle("h2", parent=body, fontName=FONT_BOLD, fontSize=11.5, leading=15,
                             spaceBefore=8, spaceAfter=4),
        "body": body,
        "small": ParagraphStyle("small", parent=body, fontSize=8, leading=10),
        "cell": ParagraphStyle("cell", parent=body, fontSize=7.5, leading=9),
        "cellhead": ParagraphStyle("cellhead", parent=body, fontName=FONT_BOLD, fontSize=7.5, leading=9),
        "caption": ParagraphStyle("caption", parent=body, fontSize=8, leading=10,
                                  textColor=colors.HexColor("#333333"), spaceAfter=10),
        "mono": ParagraphStyle("mono", parent=body, fontName=FONT_MONO, fontSize=7.5, leading=9.5),
        "cellmono": ParagraphStyle("cellmono", parent=body, fontName=FONT_MONO, fontSize=6.8,
                                   leading=9),
        "toc1": ParagraphStyle("toc1", parent=body, fontSize=10.5, leading=16, leftIndent=10),
        "toc2": ParagraphStyle("toc2", parent=body, fontSize=9, leading=12, leftIndent=28),
    }


def text(value: object) -> str:
    """Escape any value for reportlab's paragraph markup (``<``, ``&``, quotes)."""
    return escape(str(value), {'"': "&quot;"})


class _Doc(BaseDocTemplate):
    """Registers headings with the table of contents and numbers the pages."""

    def __init__(self, filename: str, title: str, **kw):
        super().__init__(filename, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN,
                         topMargin=MARGIN, bottomMargin=MARGIN, title=title, author="imrsurv",
                         creator="imrsurv", producer="imrsurv (reportlab)", subject=title,
                         invariant=1, initialFontName=FONT, initialFontSize=9.5, **kw)
        frame = Frame(MARGIN, MARGIN, TEXT_WIDTH, PAGE_HEIGHT - 2 * MARGIN, id="body")
        self.addPageTemplates([PageTemplate("page", [frame], onPage=self._footer)])
        self._report_title = title

    def _footer(self, canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7.5)
        canvas.setFillColor(colors.HexColor("#555555"))
        canvas.drawString(MARGIN, MARGIN / 2, self._report_title[:110])
        canvas.drawRightString(PAGE_WIDTH - MARGIN, MARGIN / 2, f"page {doc.page}")
        canvas.restoreState()

    def afterFlowable(self, flowable: Flowable) -> None:
        # headings travel inside KeepTogether groups (see Document._add)
        for f in getattr(flowable, "_content", [flowable]):
            level = getattr(f, "toc_level", None)
            if level is not None:
                key = f"h{self.seq.nextf('heading')}"
                self.canv.bookmarkPage(key)
                self.notify("TOCEntry", (level, text(f.getPlainText()), self.page, key))


@dataclass
class Document:
    """Flowables in order; :meth:`save` writes them atomically."""

    title: str
    story: list[Flowable] = field(default_factory=list)
    st: dict[str, ParagraphStyle] = field(default_factory=styles)
    _headings: list[Flowable] = field(default_factory=list)

    def _add(self, *flowables: Flowable) -> None:
        """Append; headings wait for the next flowable so they never end a page alone."""
        if self._headings:
            self.story.append(KeepTogether([*self._headings, flowables[0]]))
            self._headings = []
            flowables = flowables[1:]
        self.story.extend(flowables)

    def heading(self, value: str, level: int = 1, toc: bool = True) -> None:
        """A heading, listed in the contents unless ``toc=False`` (the Contents heading)."""
        p = Paragraph(text(value), self.st["h1" if level == 1 else "h2"])
        if toc:
            p.toc_level = level - 1
        self._headings.append(p)

    def paragraph(self, value: str, style: str = "body", markup: bool = False) -> None:
        """A paragraph; ``markup=True`` keeps reportlab tags the caller wrote itself."""
        self._add(Paragraph(value if markup else text(value), self.st[style]))

    def bullets(self, items: list[str]) -> None:
        for item in items:
            self._add(Paragraph(text(item), self.st["body"], bulletText="•"))

    def spacer(self, height: float = 0.3 * cm) -> None:
        self._add(Spacer(1, height))

    def page_break(self) -> None:
        self._add(PageBreak())

    def contents(self) -> None:
        toc = TableOfContents()
        toc.levelStyles = [self.st["toc1"], self.st["toc2"]]
        toc.tableStyle = TableStyle([("FONTNAME", (0, 0), (-1, -1), FONT),
                                     ("VALIGN", (0, 0), (-1, -1), "TOP")])
        # multiBuild finds the TOC only at the top level of the story
        self.story.extend([*self._headings, toc])
        self._headings = []

    def table(self, frame: pd.DataFrame, caption: str | None = None, index: bool = False,
              col_widths: list[float] | None = None, fmt: str | dict = "{:.3g}",
              mono: tuple[str, ...] = ()) -> None:
        """A table that wraps long cells at spaces; numbers formatted with ``fmt``.

        ``fmt`` is one format or a dict column -> format (others: ``{:.3g}``);
        columns in ``mono`` are set in the monospaced face (hashes). Without
        ``col_widths`` widths follow the content, and no column is narrower
        than its longest word, so headers do not break inside a word.
        """
        df = frame.reset_index() if index else frame
        fmts = fmt if isinstance(fmt, dict) else {}
        default = "{:.3g}" if isinstance(fmt, dict) else fmt
        head = [Paragraph(text(c), self.st["cellhead"]) for c in df.columns]
        cells = [[_fmt(v, fmts.get(c, default)) for c, v in zip(df.columns, row, strict=True)]
                 for row in df.itertuples(index=False)]
        body = [[Paragraph(text(v), self.st["cellmono" if c in mono else "cell"])
                 for c, v in zip(df.columns, row, strict=True)] for row in cells]
        widths = col_widths or _widths([str(c) for c in df.columns], cells,
                                       [c in mono for c in df.columns])
        tbl = Table([head, *body], colWidths=widths, repeatRows=1, hAlign="LEFT")
        tbl.setStyle(TableStyle([
            ("FONTNAME", (0, 0), (-1, -1), FONT),  # else reportlab sets Helvetica (not embedded)
            ("LINEABOVE", (0, 0), (-1, 0), 0.8, colors.black),
            ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
            ("LINEBELOW", (0, -1), (-1, -1), 0.8, colors.black),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f0f0f0")]),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ]))
        parts: list[Flowable] = [tbl]
        if caption:
            parts.append(Paragraph(text(caption), self.st["caption"]))
        if len(body) < 30:
            self._add(KeepTogether(parts))
        else:
            self._add(*parts)
        self.spacer()

    def figure(self, flowable: Flowable, caption: str | None = None) -> None:
        parts = [flowable]
        if caption:
            parts.append(Paragraph(text(caption), self.st["caption"]))
        self._add(KeepTogether(parts))

    def save(self, out: str | Path) -> Path:
        """Write the PDF next to ``out`` and rename it into place (never half-written)."""
        out = Path(out)
        if not out.parent.exists():
            raise FileNotFoundError(f"output directory {out.parent} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
        os.close(fd)
        try:
            story = [*self.story, *self._headings]
            while story and isinstance(story[-1], (Spacer, PageBreak)):
                story.pop()  # a trailing spacer or break would start an empty last page
            _Doc(tmp, self.title).multiBuild(story)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return out


_PAD = 13.0  # left + right cell padding (reportlab: 6 + 6), points, and a little slack


def _widths(head: list[str], cells: list[list[str]], mono: list[bool]) -> list[float]:
    """Column widths from content: natural widths scaled to the text width, each at
    least its longest word (header in bold, cells) so that words are not split."""
    n = len(head)
    if n == 0:
        return []
    natural, least = [], []
    for j in range(n):
        font = FONT_MONO if mono[j] else FONT
        size = 6.8 if mono[j] else 7.5
        col = [row[j] for row in cells]
        longest = max([pdfmetrics.stringWidth(v, font, size) for v in col] or [0.0])
        words = [w for v in col for w in v.split()]
        word = max([pdfmetrics.stringWidth(w, font, size) for w in words] or [0.0])
        hword = max(pdfmetrics.stringWidth(w, FONT_BOLD, 7.5) for w in head[j].split() or [""])
        least.append(max(word, hword) + _PAD)
        natural.append(max(min(longest, 160.0), pdfmetrics.stringWidth(head[j], FONT_BOLD, 7.5)
                           * 0.6, hword) + _PAD)
    if sum(least) >= TEXT_WIDTH:
        return [TEXT_WIDTH * w / sum(least) for w in least]
    total = sum(natural)
    if total <= TEXT_WIDTH:
        return [w * TEXT_WIDTH / total for w in natural] if total > 0.8 * TEXT_WIDTH \
            else natural
    # shrink the wide columns towards their minimum until everything fits
    extra = TEXT_WIDTH - sum(least)
    slack = [nat - lo for nat, lo in zip(natural, least, strict=True)]
    return [lo + extra * s / sum(slack) for lo, s in zip(least, slack, strict=True)]


def _fmt(value: object, fmt: str) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        if value != value:  # NaN
            return "–"
        return fmt.format(value)
    return str(value)
