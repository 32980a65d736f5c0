"""Formulas are parsed and checked, never evaluated (issue 11, item 1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imrsurv as ims
from imrsurv.errors import DataError
from imrsurv.formula import parse_formula
from imrsurv.models.design import build_design, required_columns


def _cox_data(n: int = 40, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "time": rng.exponential(2.0, n) + 0.1, "status": rng.integers(0, 2, n),
        "x": rng.normal(size=n), "z": rng.uniform(1, 3, n),
        "g": rng.choice(["a", "b", "c"], n), "odd name": rng.normal(size=n),
    }).assign(status=lambda d: d["status"].where(d.index > 1, 1))


def _payloads(marker: str) -> list[str]:
    cmd = f"__import__('os').system('touch {marker}')"
    return [
        cmd, f"x + {cmd}", f"I({cmd})", f"x + I({cmd})", "{" + cmd + "}", f"x + {{{cmd}}}",
        f"np.log({cmd})", f"log({cmd})", f"C({cmd})", f"C(g, {cmd})",
        f"C(g, Treatment(reference={cmd}))", f"bs(x, df={cmd})", f"center({cmd})",
        f"x + Q({cmd})", f"I(x + {cmd})", f"I(np.log(x) * {cmd})",
        "np.sqrt(x).__class__.__base__.__subclasses__()", "x.__class__", "I(x.__class__)",
        "eval('1')", "exec('1')", "I(open('/etc/passwd'))", "I([c for c in x])",
        "I(lambda: 0)", "I(x[0])", "np.os.system('true')", "I(np.os.system('true'))",
        "I(__builtins__)", "__builtins__", "I(globals())", "I(x if x else z)",
        "I(f'{x}')", "I('a' * 10)", "I(x @ z)", "I(x := 1)", "I(*x)", "I(**x)",
        f"x ~ z + {cmd}", f"`x` + {cmd}",
    ]


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a formula ran code"


def test_payloads_are_rejected_before_evaluation(marker):
    d = _cox_data()
    for f in _payloads(marker):
        with pytest.raises(DataError) as err:
            ims.fit_cox(d, f, stop="time", event="status")
        text = str(err.value)
        assert "formula" in text and ("allowed" in text or "left-hand side" in text), f
        assert not marker.exists(), f


def test_payloads_through_every_entry_point(marker):
    d = _cox_data()
    hist = ims.datasets.load_bond2014()
    for f in _payloads(marker)[:16]:
        with pytest.raises(DataError):
            build_design(d, f)
        with pytest.raises(DataError):
            required_columns(f)
        with pytest.raises(DataError):
            ims.fit_transitions(hist, f)
        with pytest.raises(DataError):
            ims.fit_recurrent(hist, f, scheme="ag")
        with pytest.raises(DataError):
            ims.fit_cox(d.assign(site=np.arange(len(d)) % 5), f, stop="time", event="status",
                        frailty="site")
        assert not marker.exists(), f


def test_payloads_through_discrete_time(marker, tmp_path):
    panel = pd.DataFrame({"site": np.repeat(list("abcdef"), 4), "year": np.tile([1, 2, 3, 4], 6),
                          "active": [1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 1] * 2,
                          "team_size": np.arange(24) % 5})
    pp = ims.read_panel(panel)
    ok = ims.fit_discrete_time(pp, "year + team_size", link="logit")
    assert list(ok.params.index) == ["Intercept", "year", "team_size"]
    for f in _payloads(marker):
        with pytest.raises(DataError):
            ims.fit_discrete_time(pp, f)
        assert not marker.exists(), f


def test_error_names_formula_piece_and_grammar():
    with pytest.raises(DataError) as err:
        parse_formula("x + I(__import__('os').getcwd())")
    msg = str(err.value)
    assert "x + I(__import__('os').getcwd())" in msg
    assert "__import__('os').getcwd()" in msg
    assert "allowed:" in msg and "C(column" in msg


@pytest.mark.parametrize("formula, columns, names", [
    ("x + C(g)", ("x", "g"), ["x", "C(g)[T.b]", "C(g)[T.c]"]),
    ("x*z", ("x", "z"), ["x", "z", "x:z"]),
    ("x:z", ("x", "z"), ["x:z"]),
    ("(x + z)**2", ("x", "z"), ["x", "z", "x:z"]),
    ("I(x**2) + np.log(z) + log1p(z) + sqrt(z) + abs(x)", ("x", "z"),
     ["I(x ** 2)", "np.log(z)", "log1p(z)", "sqrt(z)", "abs(x)"]),
    ("C(g, Treatment(reference='c'))", ("g",),
     ["C(g, Treatment(reference='c'))[T.a]", "C(g, Treatment(reference='c'))[T.b]"]),
    ("C(g, levels=['c', 'a', 'b'])", ("g",),
     ["C(g, levels=['c', 'a', 'b'])[T.a]", "C(g, levels=['c', 'a', 'b'])[T.b]"]),
    ("`odd name` + Q('x')", ("odd name", "x"), ["odd name", "x"]),
    ("center(x) + scale(z)", ("x", "z"), ["center(x)", "scale(z)"]),
    ("bs(z, df=3)", ("z",), ["bs(z, df=3)[1]", "bs(z, df=3)[2]", "bs(z, df=3)[3]"]),
    ("cr(z, df=3, constraints='center')", ("z",),
     [f"cr(z, df=3, constraints='center')[{i}]" for i in (1, 2, 3)]),
    ("C(g, Sum)", ("g",), ["C(g, Sum)[S.a]", "C(g, Sum)[S.b]"]),
    ("x + I(g == 'a')", ("x", "g"), ["x", "I(g == 'a')"]),
    ("x / g", ("x", "g"), ["x", "x:g[T.b]", "x:g[T.c]"]),
])
def test_grammar_builds_the_usual_columns(formula, columns, names):
    d = _cox_data()
    assert parse_formula(formula).columns == columns
    assert build_design(d, formula).columns == names


def test_canonical_matches_formulaic_coding():
    """The design of the re-generated text equals formulaic's own on harmless text."""
    from formulaic import model_matrix
    d = _cox_data()
    for f in ["x + C(g) + x:C(g)", "I(x * z - 1) + log(z)", "C(g, Sum)"]:
        ours = build_design(d, f)
        ref = model_matrix(f + " + 1", d, context={})
        keep = [c for c in ref.columns if c != "Intercept"]
        assert ours.columns == keep
        np.testing.assert_allclose(ours.matrix, ref[keep].to_numpy(float))


def test_missing_column_is_named_and_nothing_is_looked_up_elsewhere():
    d = _cox_data()
    # "open", "np" and "exp" exist in Python / formulaic's namespace, not in the data
    for f, col in [("x + open", "open"), ("np", "np"), ("I(exp + 1)", "exp")]:
        with pytest.raises(DataError, match=f'names column "{col}", which is not in the data'):
            build_design(d, f)


ALPHABET = st.sampled_from(
    list("xzg+-*/:()~`'\"[]{}.,=_ 0123456789") + ["**", "I(", "C(", "np.", "log(", "__",
                                                   "import", "os", "system", "lambda",
                                                   "Q(", "eval", "exec", "getattr",
                                                   "Treatment(", "reference=", "levels="])


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(ALPHABET, min_size=1, max_size=14))
def test_fuzzed_formulas_never_run_code(tmp_path, pieces):
    marker = tmp_path / "FUZZ_PWNED"
    cmd = f"__import__('os').system('touch {marker}')"
    text = "".join(pieces).replace("os", cmd, 1) if "os" in pieces else "".join(pieces)
    d = _cox_data(20)
    try:
        des = build_design(d, text)
    except DataError:
        pass
    else:  # accepted: only data columns were read
        assert set(parse_formula(text).columns) <= set(d.columns)
        assert des.matrix.shape[0] == len(d)
    assert not marker.exists(), text


def test_power_rejects_a_payload_before_any_replicate(marker):
    cmd = f"__import__('os').system('touch {marker}')"
    for kw in ({"formula": f"I({cmd})"}, {"discrete_formula": f"C(year) + {cmd}"}):
        with pytest.raises(DataError, match="cannot parse formula"):
            ims.power({"n_sites": 10, "years": 3, "hr": 2.0}, analyses=["ag"], n_replicates=2,
                      seed=1, **kw)
    assert not marker.exists()


@pytest.mark.parametrize("formula, piece", [
    ("x + __import__('os').getcwd()", "attribute access is not allowed"),
    ("I(x * 1e400)", "numbers must be finite"),
    ("x + 2", "may only be 0 or 1"),
    ("x ** 0", "whole number from 1 to 10"),
    ("C(g, levels=[np])", "a level must be a quoted string or a number"),
    ("bs(x, df='3')", "expected a literal int"),
    ("scale(x, ddof=0)", "takes exactly one argument"),
    ("C(I(x))", "expected a column name"),
    ("I(C(g))", "only arithmetic"),
    ("log(x) ~ z", "left-hand side"),
    ("x ~ y ~ z", "only one ~"),
    ("Q('__class__')", "names starting with __"),
    ("", "is empty"),
])
def test_specific_rejections(formula, piece):
    with pytest.raises(DataError, match=piece.replace("(", r"\(").replace("*", r"\*")):
        parse_formula(formula)


def test_formula_must_be_a_string():
    with pytest.raises(DataError, match="formula must be a string"):
        parse_formula(["x"])


def test_report_spec_formulas_never_run_code(tmp_path, marker):
    cmd = f"__import__('os').system('touch {marker}')"
    spec = {"study": {"title": "T"}, "data": {"dataset": "bond2014"},
            "analysis": {"sections": ["discrete", "recurrent"],
                         "discrete_formula": f"C(year) + I({cmd})",
                         "covariates": ["team_size", cmd]}}
    from imrsurv.report.build import report  # ims.report is shadowed once the package loads

    try:
        out = report(spec, tmp_path / "r.pdf")
    except DataError:
        pass
    else:  # the sections that cannot be fitted say why in the PDF
        assert out.stat().st_size > 0
    assert not marker.exists()


@pytest.mark.parametrize("formula, piece", [
    ("(" * 60 + "x" + ")" * 60, "nested more than 50 deep"),
    ("I(" + "-" * 3000 + "x)", "nested too deeply"),
    ("x" * 10_001, "at most 10000"),
    ("x\x07", "control characters"),
    ("`a\nb`", "control characters"),
    ("I(9 ** 9 ** 9)", "needs a column"),
    ("I(x ** 1000)", "at most 100"),
    ("(x + z) ** 11", "from 1 to 10"),
    ("bs(x, df=1000000)", "from 0 to 100"),
])
def test_resource_limits(formula, piece):
    with pytest.raises(DataError, match=piece):
        parse_formula(formula)


def test_non_ascii_column_names():
    d = _cox_data().rename(columns={"x": "été", "z": "ø y"})
    assert parse_formula("été + `ø y`").columns == ("été", "ø y")
    assert build_design(d, "été + `ø y` + I(été ** 2)").columns == ["été", "ø y", "I(été ** 2)"]
