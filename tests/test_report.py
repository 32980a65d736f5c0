"""PDF reports: reproducible bytes, expected content, bad input."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pypdf import PdfReader

import imrsurv as ims
from imrsurv.report.build import report

SMALL_SPEC = {
    "study": {"title": "Small", "data_date": "2020-01-01"},
    "data": {"dataset": "norway_imr"},
    "analysis": {"horizon": 6.0, "group": "setting", "sections": ["summary", "bond", "mcf"]},
}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


@pytest.fixture(scope="module")
def bond_pdfs(tmp_path_factory):
    """The Bond replication built twice by the same command, each in its own Python process."""
    paths = []
    for i in (1, 2):
        cwd = tmp_path_factory.mktemp(f"run{i}")
        subprocess.run([sys.executable, "-m", "imrsurv.cli", "replicate", "bond2014", "--out",
                        "bond2014.pdf"], check=True, capture_output=True, text=True, cwd=cwd)
        paths.append(cwd / "bond2014.pdf")
    return paths


def test_replication_is_byte_identical_across_processes(bond_pdfs):
    a, b = bond_pdfs
    assert a.stat().st_size > 20_000
    assert sha(a) == sha(b)


def test_replication_holds_the_bond_numbers_and_sections(bond_pdfs):
    text = pdf_text(bond_pdfs[0])
    for heading in ("Contents", "Data and validation", "Programme status at 6 years",
                    "Time to first discontinuation", "mean cumulative function",
                    "Sustained, discontinued, restarted over time", "Cox models",
                    "Proportional hazards diagnostics", "Discrete-time hazards",
                    "Site heterogeneity: shared gamma frailty", "Methods",
                    "References", "Provenance"):
        assert heading in text, heading
    status = text[text.index("Programme status at 6 years"):]
    for number in ("23", "8", "18", "0.469", "0.163", "0.367"):
        assert number in status, number
    assert "Andersen PK, Gill RD (1982)" in text and "Lawless JF, Nadeau C (1995)" in text
    assert "SHA-256" in text and "reportlab" in text
    reader = PdfReader(bond_pdfs[0])
    assert len(reader.pages) >= 8
    assert reader.metadata.title == "Long-term sustainability of evidence-based practices"


def test_fonts_are_embedded(bond_pdfs):
    out = subprocess.run(["pdffonts", str(bond_pdfs[0])], capture_output=True, text=True, check=True)
    rows = out.stdout.splitlines()[2:]
    assert rows, "no fonts listed"
    assert all(" yes " in r for r in rows if "DejaVu" in r)


def test_figures_are_vector_forms_without_images_or_fonts(bond_pdfs):
    """Each figure is matplotlib's own drawing in a form XObject: nothing rasterised and no
    font of its own (its text is drawn as paths)."""
    images = subprocess.run(["pdfimages", "-list", str(bond_pdfs[0])], capture_output=True,
                            text=True, check=True)
    assert images.stdout.splitlines()[2:] == []
    forms = []
    for page in PdfReader(bond_pdfs[0]).pages:
        xobjects = page["/Resources"].get("/XObject")
        if xobjects is not None:
            forms += [x.get_object() for x in xobjects.get_object().values()]
    assert len(forms) >= 5          # KM, MCF, states, forest plot, Schoenfeld residuals
    for form in forms:
        assert form["/Subtype"] == "/Form"
        resources = form["/Resources"].get_object()
        fonts = resources.get("/Font")
        assert fonts is None or len(fonts.get_object()) == 0
        assert len(form.get_data()) > 1000  # paths, not an empty box


def test_spec_typo_names_the_key_and_the_allowed_ones(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('[study]\ntitle = "x"\n[data]\ndataset = "bond2014"\n[analysis]\nhorizn = 6\n')
    with pytest.raises(ims.DataError, match=r"unknown key 'horizn' \(allowed: change_year, covariates, "):
        report(spec, tmp_path / "out.pdf")
    assert not (tmp_path / "out.pdf").exists()


def test_invalid_data_stops_before_any_page(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("site,time,event\nA,0,start\nA,1,restart\nA,2,end\n")
    out = tmp_path / "out.pdf"
    out.write_bytes(b"old report")
    spec = {"study": {"title": "t"}, "data": {"events": str(events)}}
    with pytest.raises(ims.DataError, match="restart while active"):
        report(spec, out)
    assert out.read_bytes() == b"old report"  # untouched
    assert list(tmp_path.glob("*.part")) == []


def test_missing_input_file_and_output_directory(tmp_path):
    spec = {"study": {"title": "t"}, "data": {"events": str(tmp_path / "nope.csv")}}
    with pytest.raises(ims.DataError, match="file not found"):
        report(spec, tmp_path / "out.pdf")
    with pytest.raises(ims.DataError, match="does not exist"):
        report(SMALL_SPEC, tmp_path / "missing" / "out.pdf")


def test_awkward_site_names_do_not_break_the_pdf(tmp_path):
    names = ["<b>bold & co</b>", 'quote "double" \'single\'', "Ωμέγα Κέντρο", "Центр",
             "x" * 300, "A&amp;B"]
    rows = []
    for i, n in enumerate(names):
        rows += [(n, 0, "start"), (n, 1 + i * 0.5, "discontinue"), (n, 6, "end")]
    events = tmp_path / "events.csv"
    pd.DataFrame(rows, columns=["site", "time", "event"]).to_csv(events, index=False)
    sites = tmp_path / "sites.csv"
    pd.DataFrame({"site": names, "practice": ["<IMR>", "IMR & co", "IMR", "IMR", "IMR", "IMR"]}
                 ).to_csv(sites, index=False)
    spec = {"study": {"title": "Ünïcode <title> & co"},
            "data": {"events": str(events), "sites": str(sites)},
            "analysis": {"sections": ["summary", "bond", "km", "mcf", "states"]}}
    out = report(spec, tmp_path / "weird.pdf")
    text = pdf_text(out)
    assert "Ωμέγα Κέντρο" in text and "Центр" in text and "<b>bold & co</b>" in text


def test_existing_output_is_replaced(tmp_path):
    out = tmp_path / "r.pdf"
    out.write_bytes(b"old")
    report(SMALL_SPEC, out)
    assert out.read_bytes().startswith(b"%PDF")
    assert out.stat().st_mode & 0o044, "the report should be readable like any file the user writes"


def test_no_text_is_set_in_a_non_embedded_font(bond_pdfs):
    import re

    for page in PdfReader(bond_pdfs[0]).pages:
        content = page.get_contents().get_data()
        fonts = page["/Resources"].get("/Font", {})
        for key in fonts:
            base = str(fonts[key].get_object().get("/BaseFont"))
            if "+" not in base:  # subset-embedded fonts are named ABCDEF+Name
                # a text object that selects the font and then shows glyphs (an empty BT/ET
                # block that only selects reportlab's default font draws nothing)
                shown = re.escape(key.encode()) + rb"\s+[\d.]+\s+Tf(?:(?!ET|Tf).)*?T[jJ]"
                assert not re.search(shown, content, re.S), base
