"""The example reports page by page: fonts, contents, labels, tables, golden text (pdftotext).

Golden files live in tests/golden/; rebuild them after an intended change with
``IMRSURV_UPDATE_GOLDEN=1 python -m pytest tests/test_report_pages.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from imrsurv.report.build import report

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    return {name: report(ROOT / "reports" / f"{name}.toml", out / f"{name}.pdf",
                         command=f"imrsurv report reports/{name}.toml", progress=False)
            for name in ("bond2014", "small_dates")}


def text(path: Path, first: int | None = None, last: int | None = None,
         layout: bool = True) -> str:
    args = ["pdftotext", *(["-layout"] if layout else [])]
    if first:
        args += ["-f", str(first), "-l", str(last or first)]
    return subprocess.run([*args, str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def between(body: str, start: str, end: str, after: str | None = None) -> str:
    """The text from ``start`` to ``end``, searching after the contents page (and ``after``)."""
    i = body.index(start, body.index("Data and validation\n", body.index("Contents") + 20)
                   if after is None else body.index(after))
    return body[i:body.index(end, i)]


def check_golden(name: str, actual: str) -> None:
    actual = "\n".join(line.rstrip() for line in actual.strip().splitlines()) + "\n"
    path = GOLDEN / name
    if os.environ.get("IMRSURV_UPDATE_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"golden {path} missing: run with IMRSURV_UPDATE_GOLDEN=1"
    assert actual == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["bond2014", "small_dates"])
def test_every_font_is_embedded(pdfs, name):
    out = subprocess.run(["pdffonts", str(pdfs[name])], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    header = out[0]
    col = header.index("emb")
    rows = out[2:]
    assert rows, "no fonts listed"
    assert all(r[col:col + 3] == "yes" for r in rows), "\n".join(out)
    assert not any("Helvetica" in r for r in rows)


@pytest.mark.parametrize("name", ["bond2014", "small_dates"])
def test_contents_does_not_list_itself_and_no_blank_last_page(pdfs, name):
    contents = text(pdfs[name], 2)
    assert contents.count("Contents") == 1
    assert "Data and validation" in contents and "Provenance" in contents
    last = text(pdfs[name], len(PdfReader(pdfs[name]).pages))
    assert re.search(r"\w", last.replace("page", "")), "the last page is empty"
    assert "Software versions" in last


def test_sha256_hashes_do_not_wrap(pdfs):
    body = text(pdfs["bond2014"])
    hashes = re.findall(r"\b[0-9a-f]{64}\b", body)
    assert len(hashes) == 5  # events, covariates, sites, panel, spec
    assert not re.search(r"\b[0-9a-f]{20,63}\s*\n\s*[0-9a-f]{1,44}\b", body)


def test_methods_name_the_tie_method_once(pdfs):
    body = text(pdfs["bond2014"], layout=False)
    assert "Efron ties unless stated" not in body
    assert "handled by the Efron method" in " ".join(body.split())


def test_human_labels_no_snake_case_in_tables(pdfs):
    body = text(pdfs["bond2014"])
    for raw in ("recent_leader_change", "years_discontinued", "years_active", "training_access",
                "team_size", "set_aside", "exp(Intercept)"):
        assert raw not in body, raw
    flat = " ".join(text(pdfs["bond2014"], layout=False).split())
    for lab in ("Recent leadership change (1 yr)", "Team size", "Training access",
                "Years discontinued", "Rows set aside"):
        assert lab in flat, lab
    # headers break at spaces only: no header word split across lines
    for broken in ("discontin\n", "Discontinuatio\n", "Follow-u\n"):
        assert broken not in body


def test_zph_table_fixed_precision_and_no_negative_chisq(pdfs):
    body = text(pdfs["bond2014"])
    ph = between(body, "Proportional hazards diagnostics\n", "Discrete-time hazards (annual")
    rows = re.findall(r"^\s*(Recent leadership change \(1 yr\)|Team size|Training access|"
                      r"Global test)\s+(\S+)\s+(\d)\s+(\S+)\s*$", ph, re.M)
    assert len(rows) == 4 * 4  # four models x (three terms + global)
    for _, chisq, _, p in rows:
        assert re.fullmatch(r"\d+\.\d{3}", chisq), chisq
        assert re.fullmatch(r"\d\.\d{3}|< 0\.001", p), p
    assert "e-" not in ph and "-0.000" not in ph


def test_discrete_intercept_is_not_a_hazard_ratio(pdfs):
    body = text(pdfs["bond2014"])
    row = next(line for line in body.splitlines() if "Intercept (baseline)" in line)
    cells = row.split()
    assert cells[4] == "–" and cells[5] == "–"  # hazard ratio and CI
    assert "not a hazard ratio" in " ".join(body.split())


def test_frailty_table_explains_its_standard_error(pdfs):
    body = text(pdfs["bond2014"])
    sec = between(body, "Site heterogeneity: shared gamma frailty", "Methods")
    header = next(line for line in sec.splitlines() if line.strip().startswith("Term"))
    assert "se2" not in header and "95% CI" in header
    assert "se2" in " ".join(sec.split())  # the caption says what R's se2 is


def test_bond_split_beside_the_published_one_golden(pdfs):
    body = text(pdfs["bond2014"])
    block = between(body, "Status ", "Site ", after="Aalen-Johansen probabilities (95% CI).")
    check_golden("report_bond_published.txt", block)
    flat = " ".join(block.split())
    assert "Sustained 47 23 46.9 33–62%" in flat and "Discontinued 37 18 36.7 23–52%" in flat
    assert "exact multinomial p = 1.000" in flat and "chi-square = 0.00 on 2 df" in flat


def test_km_table_and_at_risk_golden(pdfs):
    body = text(pdfs["bond2014"])
    block = between(body, "Kaplan-Meier probability of not yet having discontinued at yearly",
                    "Log-rank test")
    check_golden("report_km_at_risk.txt", block)
    # the at-risk table says 6 ACT sites at risk at year 6, as the KM table's n_risk
    act = [line for line in block.splitlines() if line.strip().startswith("ACT")][-1]
    assert re.search(r"\b6\s*/\s*1$", act.rstrip()), act


def test_title_page_describes_the_data_read(pdfs):
    title = " ".join(text(pdfs["small_dates"], 1).split())
    assert "The data read: 10 sites" in title
    assert "each followed 6.00 years" in title and "49 sites" not in title
    assert "8 discontinuation(s) and 2 restart(s)" in title


def test_small_dates_report_golden_status(pdfs):
    body = text(pdfs["small_dates"])
    block = between(body, "Programme status at 6 years", "Status ",
                    after="Data and validation\n")
    check_golden("report_small_dates_status.txt", block)
    # dates read as calendar years: every site followed to 6 years, so crude = Aalen-Johansen
    row = next(line for line in block.splitlines() if line.strip().startswith("all"))
    assert row.split()[1:4] == ["2", "(20%)", "0.200"]
