"""Formula strings, parsed and checked, never evaluated.

A formula is user text (it can come from a report spec somebody else wrote), so
it is read by this parser into a small tree and checked against a fixed grammar
*before* anything is evaluated.  Only a canonical formula string re-generated
from the checked tree (column names, numbers, level strings and allow-listed
function names) is handed on to formulaic, with an explicit evaluation context
that holds nothing but the allowed transforms; the user's own text never is.

Grammar (Wilkinson-Rogers, as R and formulaic read it)::

    formula  := [response "~"] sum
    sum      := ["-"|"+"] product (("+" | "-") product)*
    product  := inter (("*" | "/") inter)*
    inter    := power (":" power)*
    power    := atom ["**" integer]
    atom     := column | "(" sum ")" | "0" | "1" | call
    column   := identifier | `backtick quoted` | Q("quoted")
    call     := C(column [, contrast] [, levels=[level, ...]])
              | I(arith) | f(arith) | np.f(arith) | center(arith) | scale(arith)
              | bs(arith, df=, degree=, knots=, include_intercept=, lower_bound=,
                   upper_bound=) | cr(arith, df=, knots=, lower_bound=, upper_bound=,
                                      constraints="center")
    f        := log | log1p | log2 | log10 | exp | sqrt | abs
    contrast := Treatment | Sum | Helmert | Poly | Diff, bare or called with a level
                (``Treatment(reference="IMR")``), or contr.treatment("IMR") / contr.sum()
    arith    := numbers, columns, + - * / ** and unary -, comparisons (< <= > >= == !=)
                with numbers or level strings, and calls of f

Anything else (attribute access other than ``np.f`` / ``contr.x``, other calls,
subscripts, lambdas, comprehensions, ``{...}`` blocks, dunder names, strings that
are not level names) raises :class:`DataError` naming the formula, the piece and
what is allowed.  Limits keep a hostile formula from exhausting the machine: at
most ``MAX_LENGTH`` characters and ``MAX_DEPTH`` nested parentheses, term powers
up to ``MAX_POWER``, exponents inside ``I()`` up to 100 and never between numbers
only (Python would compute ``9 ** 9 ** 9`` exactly), spline ``df``/knots up to
``MAX_DF``; no control characters.
"""

from __future__ import annotations

import ast
import json
import keyword
import math
import re
from dataclasses import dataclass, field

import numpy as np

from imrsurv.errors import DataError

__all__ = ["ParsedFormula", "parse_formula", "SAFE_CONTEXT", "GRAMMAR"]

GRAMMAR = ("allowed: column names (`quoted` or Q(\"quoted\") when not plain identifiers), "
           "+ - : * / ** ( ), 0 and 1, C(column[, Treatment(reference=...)|Sum|Helmert|Poly|"
           "Diff][, levels=[...]]), I(arithmetic), log log1p log2 log10 exp sqrt abs "
           "(also as np.log ...), center, scale, bs, cr")

MATH = ("log", "log1p", "log2", "log10", "exp", "sqrt", "abs")
_CONTRASTS = ("Treatment", "Sum", "Helmert", "Poly", "Diff")
_CONTR = ("treatment", "sum", "helmert", "poly", "diff")
_SPLINE_KW = {
    "bs": {"df": "int", "degree": "int", "knots": "numbers", "include_intercept": "bool",
           "lower_bound": "number", "upper_bound": "number"},
    "cr": {"df": "int", "knots": "numbers", "lower_bound": "number", "upper_bound": "number",
           "constraints": "center"},
}

#: the only names formulaic can resolve besides data columns (its own transforms
#: ``C``, ``I``, ``Q``, ``center``, ``scale``, ``bs``, ``cr``, ``np``, contrasts)
SAFE_CONTEXT = {name: getattr(np, name) for name in MATH}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[^\W\d][\w.]*")  # identifiers (also non-ASCII), dots caught later
MAX_LENGTH = 10_000  # characters of formula text
MAX_DEPTH = 50  # nested parentheses
MAX_POWER = 10  # (a + b + c) ** k
MAX_DF = 100  # spline degrees of freedom, knots
_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _fail(formula: str, piece: str, why: str) -> DataError:
    return DataError([f'cannot parse formula "{_short(formula)}": {_short(piece, 80)}: {why}; '
                      f"{GRAMMAR}"],
                     title="invalid formula")


def quote_name(name: str) -> str:
    """A column name as formula text: bare when a plain identifier, else backticks."""
    if _NAME.fullmatch(name) and not keyword.iskeyword(name):
        return name
    return f"`{name}`"


@dataclass(frozen=True)
class ParsedFormula:
    """A checked formula: ``canonical`` (right-hand side re-generated from the tree),
    ``columns`` it reads (in order of appearance), ``response`` (left-hand side column or
    None) and ``text`` (what the user wrote)."""

    text: str
    canonical: str
    columns: tuple[str, ...]
    response: str | None = None
    functions: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------- tokenizer

def _tokens(formula: str) -> list[tuple[str, str]]:
    """``(kind, text)`` tokens; a call keeps its argument text whole (balanced
    parentheses, strings and backticks respected) as kind ``call``."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(formula)
    while i < n:
        ch = formula[i]
        if ch.isspace():
            i += 1
        elif formula.startswith("**", i):
            out.append(("op", "**"))
            i += 2
        elif ch in "+-*/:~()":
            out.append(("op", ch))
            i += 1
        elif ch == "`":
            j = formula.find("`", i + 1)
            if j < 0:
                raise _fail(formula, formula[i:], "unclosed backtick")
            name = formula[i + 1:j]
            if not name.strip():
                raise _fail(formula, formula[i:j + 1], "empty column name")
            out.append(("name", name))
            i = j + 1
        elif (m := _NUMBER.match(formula, i)) is not None:
            out.append(("number", m.group(0)))
            i = m.end()
        elif (m := _WORD.match(formula, i)) is not None:
            word = m.group(0)
            j = m.end()
            k = j
            while k < n and formula[k].isspace():
                k += 1
            if k < n and formula[k] == "(":
                end = _close(formula, k)
                out.append(("call", formula[m.start():end]))
                i = end
            else:
                if "." in word:
                    raise _fail(formula, word, "a name with a dot is attribute access; quote "
                                "a column name with dots in backticks")
                out.append(("name", word))
                i = j
        elif ch == ".":
            raise _fail(formula, formula[i:i + 20], "attribute access is not allowed")
        else:
            raise _fail(formula, formula[i:i + 20], f"unexpected character {ch!r}")
    return out


def _close(formula: str, start: int) -> int:
    """Index after the parenthesis matching the one at ``start``."""
    depth, i, n = 0, start, len(formula)
    while i < n:
        ch = formula[i]
        if ch in "\"'`":
            j = formula.find(ch, i + 1)
            if j < 0:
                raise _fail(formula, formula[i:], "unclosed quote")
            i = j + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise _fail(formula, formula[start:], "unclosed parenthesis")


# ---------------------------------------------------------------- formula level

class _Parser:
    _PREC = {"+": 1, "-": 1, "*": 2, "/": 2, ":": 3, "**": 4}

    def __init__(self, formula: str, tokens: list[tuple[str, str]]):
        self.f = formula
        self.toks = tokens
        self.pos = 0
        self.columns: list[str] = []
        self.functions: list[str] = []

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise _fail(self.f, "end of formula", "a term is missing")
        self.pos += 1
        return tok

    def at(self, *ops: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "op" and tok[1] in ops

    # each level returns (text, precedence of its top operator; 5 for atoms)
    def sum(self) -> tuple[str, int]:
        parts: list[str] = []
        if self.at("-", "+"):
            parts.append(self.take()[1])
        left, p = self.product()
        text = f"{parts[0]} {left}" if parts else left
        prec = 1 if parts else p
        while self.at("+", "-"):
            op = self.take()[1]
            right, _ = self.product()
            text, prec = f"{text} {op} {right}", 1
        return text, prec

    def _binary(self, ops: tuple[str, ...], sub, level: int) -> tuple[str, int]:
        text, prec = sub()
        while self.at(*ops):
            op = self.take()[1]
            right, rp = sub()
            if prec < level:
                text = f"({text})"
            if rp <= level:
                right = f"({right})"
            text, prec = f"{text}{op}{right}" if op == ":" else f"{text} {op} {right}", level
        return text, prec

    def product(self) -> tuple[str, int]:
        return self._binary(("*", "/"), self.inter, 2)

    def inter(self) -> tuple[str, int]:
        return self._binary((":",), self.power, 3)

    def power(self) -> tuple[str, int]:
        text, prec = self.atom()
        if self.at("**"):
            self.take()
            kind, num = self.take()
            if kind != "number" or not num.isdigit() or not 1 <= int(num) <= MAX_POWER:
                raise _fail(self.f, f"** {num}", "the power of a term must be a whole number "
                            f"from 1 to {MAX_POWER}")
            text = f"{text if prec == 5 else f'({text})'} ** {int(num)}"
            prec = 4
        return text, prec

    def atom(self) -> tuple[str, int]:
        kind, text = self.take()
        if kind == "name":
            self._column(text, text)
            return quote_name(text), 5
        if kind == "number":
            if text not in ("0", "1"):
                raise _fail(self.f, text, "a number on its own may only be 0 or 1 (the "
                            "intercept); use I() for arithmetic")
            return text, 5
        if kind == "call":
            return _Call(self).check(text), 5
        if text == "(":
            inner, _ = self.sum()
            if not self.at(")"):
                raise _fail(self.f, "(", "unbalanced parenthesis")
            self.take()
            return f"({inner})", 5
        raise _fail(self.f, text, "a term is missing here")

    def _column(self, name: str, piece: str) -> None:
        if not name.isprintable():
            raise _fail(self.f, repr(name), "column names may not hold newlines or other "
                        "control characters")
        if name.startswith("__") or "`" in name:
            raise _fail(self.f, piece, "names starting with __ (or holding backticks) are "
                        "not allowed")
        if name not in self.columns:
            self.columns.append(name)


# ---------------------------------------------------------------- inside calls

class _Call:
    """Checks one call's Python argument text with :mod:`ast` (parse only) and
    re-emits it from the tree."""

    def __init__(self, parser: _Parser):
        self.p = parser
        self.f = parser.f

    def bad(self, node: ast.AST | str, why: str) -> DataError:
        piece = node if isinstance(node, str) else ast.unparse(node)
        return _fail(self.f, piece, why)

    def check(self, text: str) -> str:
        # backtick names become Q("...") so that ast can read them
        src = re.sub(r"`([^`]*)`", lambda m: f"Q({json.dumps(m.group(1))})", text)
        try:
            tree = ast.parse(src.strip(), mode="eval")
        except (RecursionError, MemoryError):
            raise self.bad(text, "nested too deeply") from None
        except (SyntaxError, ValueError) as exc:
            raise self.bad(text, f"cannot parse ({exc.msg if hasattr(exc, 'msg') else exc})"
                           ) from None
        try:
            self.call(tree.body, top=True)  # raises on anything outside the grammar
            return _emit(tree.body)
        except RecursionError:
            raise self.bad(text[:80], "nested too deeply") from None

    def fname(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return node.id
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in ("np", "numpy") and node.attr in MATH):
            return f"np.{node.attr}"
        return None

    def call(self, node: ast.AST, top: bool = False) -> str:
        if not isinstance(node, ast.Call):
            raise self.bad(node, "expected a function call")
        name = self.fname(node.func)
        if name is None:
            raise self.bad(node.func, "calls only allowed functions")
        if name not in self.p.functions:
            self.p.functions.append(name)
        if name == "Q":
            return quote_name(self.q(node))
        if name == "C":
            if not top:
                raise self.bad(node, "C() must be a term of its own")
            return self.c(node)
        if name in _SPLINE_KW:
            if not top:
                raise self.bad(node, f"{name}() must be a term of its own")
            return self.spline(node, name)
        if name == "I" or name in MATH or name.startswith("np.") or name in ("center", "scale"):
            if node.keywords or len(node.args) != 1:
                raise self.bad(node, f"{name}() takes exactly one argument")
            return f"{name}({self.arith(node.args[0])})"
        raise self.bad(node.func, f"{name}() is not an allowed function")

    def q(self, node: ast.Call) -> str:
        if (node.keywords or len(node.args) != 1 or not isinstance(node.args[0], ast.Constant)
                or not isinstance(node.args[0].value, str)):
            raise self.bad(node, 'Q() takes one quoted column name, Q("name")')
        name = node.args[0].value
        self.p._column(name, ast.unparse(node))
        return name

    def column(self, node: ast.AST) -> str:
        if isinstance(node, ast.Name):
            self.p._column(node.id, node.id)
            return quote_name(node.id)
        if isinstance(node, ast.Call) and self.fname(node.func) == "Q":
            return quote_name(self.q(node))
        raise self.bad(node, "expected a column name")

    def c(self, node: ast.Call) -> str:
        if not node.args or len(node.args) > 2:
            raise self.bad(node, "C() takes a column and optionally a contrast")
        parts = [self.column(node.args[0])]
        if len(node.args) == 2:
            parts.append(self.contrast(node.args[1]))
        for kw in node.keywords:
            if kw.arg == "levels":
                parts.append(f"levels={self.levels(kw.value)}")
            elif kw.arg == "contr":
                parts.append(f"contr={self.contrast(kw.value)}")
            else:
                raise self.bad(node, f"C() takes levels= or contr=, not {kw.arg}=")
        return f"C({', '.join(parts)})"

    def levels(self, node: ast.AST) -> str:
        if not isinstance(node, (ast.List, ast.Tuple)):
            raise self.bad(node, "levels= must be a list of level names")
        return "[" + ", ".join(self.level(e) for e in node.elts) + "]"

    def text(self, node: ast.Constant) -> str:
        """A level string: printable, no backticks (they would read as names)."""
        v = node.value
        if "`" in v or "__imrsurv_q" in v or not v.isprintable():
            raise self.bad(node, "a level name may not hold backticks or control characters")
        return repr(v)

    def level(self, node: ast.AST) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return self.text(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return "-" + self.level(node.operand)
        if (isinstance(node, ast.Constant) and not isinstance(node.value, bool)
                and isinstance(node.value, (str, int, float))
                and (isinstance(node.value, str) or math.isfinite(node.value))):
            return repr(node.value)
        raise self.bad(node, "a level must be a quoted string or a number")

    def contrast(self, node: ast.AST) -> str:
        if isinstance(node, ast.Name) and node.id in _CONTRASTS:
            return node.id
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in _CONTRASTS:
                name = f.id
            elif (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                  and f.value.id == "contr" and f.attr in _CONTR):
                name = f"contr.{f.attr}"
            else:
                raise self.bad(node, "unknown contrast")
            if len(node.args) > 1:
                raise self.bad(node, "a contrast takes at most one reference level")
            parts = [self.level(a) for a in node.args]
            for kw in node.keywords:
                if kw.arg not in ("reference", "base"):
                    raise self.bad(node, f"a contrast takes reference=, not {kw.arg}=")
                parts.append(f"{kw.arg}={self.level(kw.value)}")
            return f"{name}({', '.join(parts)})"
        raise self.bad(node, "the contrast must be Treatment, Sum, Helmert, Poly or Diff "
                       '(e.g. Treatment(reference="IMR"))')

    def spline(self, node: ast.Call, name: str) -> str:
        if len(node.args) != 1:
            raise self.bad(node, f"{name}() takes one variable, then keywords")
        parts = [self.arith(node.args[0])]
        allowed = _SPLINE_KW[name]
        for kw in node.keywords:
            if kw.arg not in allowed:
                raise self.bad(node, f"{name}() takes {', '.join(k + '=' for k in allowed)}, "
                               f"not {kw.arg}=")
            parts.append(f"{kw.arg}={self.literal(kw.value, allowed[kw.arg])}")
        return f"{name}({', '.join(parts)})"

    def literal(self, node: ast.AST, kind: str) -> str:
        if kind == "numbers":
            if not isinstance(node, (ast.List, ast.Tuple)) or len(node.elts) > MAX_DF:
                raise self.bad(node, f"expected a list of at most {MAX_DF} numbers")
            return "[" + ", ".join(self.literal(e, "number") for e in node.elts) + "]"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and kind == "number":
            return "-" + self.literal(node.operand, kind)
        if isinstance(node, ast.Constant):
            v = node.value
            if kind == "bool" and isinstance(v, bool):
                return repr(v)
            if kind == "center" and v == "center":
                return repr(v)
            if (kind == "int" and isinstance(v, int) and not isinstance(v, bool)
                    and 0 <= v <= MAX_DF):
                return repr(v)
            if (kind == "number" and isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v)):
                return repr(v)
        bound = f" from 0 to {MAX_DF}" if kind == "int" else ""
        raise self.bad(node, f"expected a literal {kind}{bound}")

    _BIN = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
    _CMP = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
            ast.NotEq: "!="}

    def arith(self, node: ast.AST) -> str:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and not any(
                isinstance(n, ast.Name) or (isinstance(n, ast.Call) and self.fname(n.func) == "Q")
                for n in ast.walk(node)):
            # numbers only: Python would compute e.g. 9 ** 9 ** 9 exactly, for ever
            raise self.bad(node, "** needs a column on one side (write the number itself)")
        if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)
                and isinstance(node.right, ast.Constant)
                and isinstance(node.right.value, (int, float)) and abs(node.right.value) > 100):
            raise self.bad(node, "an exponent may be at most 100")
        if isinstance(node, ast.BinOp) and type(node.op) in self._BIN:
            return f"({self.arith(node.left)} {self._BIN[type(node.op)]} {self.arith(node.right)})"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return f"({'-' if isinstance(node.op, ast.USub) else '+'}{self.arith(node.operand)})"
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in self._CMP:
                raise self.bad(node, "one comparison (< <= > >= == !=) at a time")
            left, right = node.left, node.comparators[0]
            return (f"({self.operand(left)} {self._CMP[type(node.ops[0])]} "
                    f"{self.operand(right)})")
        if isinstance(node, ast.Name):
            return self.column(node)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
                if not math.isfinite(node.value):
                    raise self.bad(node, "numbers must be finite")
                return repr(node.value)
            raise self.bad(node, "only numbers here (level strings only in comparisons)")
        if isinstance(node, ast.Call):
            name = self.fname(node.func)
            if name == "Q":
                return self.column(node)
            if name in MATH or (name or "").startswith("np."):
                return self.call(node)
            raise self.bad(node, "inside I() and transforms only arithmetic on columns and "
                           f"numbers and {', '.join(MATH)} are allowed")
        raise self.bad(node, "inside I() and transforms only arithmetic (+ - * / **, "
                       "comparisons) on columns and numbers is allowed")

    def operand(self, node: ast.AST) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return self.text(node)
        return self.arith(node)


class _Canon(ast.NodeTransformer):
    """Q("odd name") -> a placeholder name (backticks after unparsing); numpy. -> np."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if isinstance(node.func, ast.Name) and node.func.id == "Q":
            name = node.args[0].value
            if quote_name(name) == name:
                return ast.Name(id=name, ctx=ast.Load())
            key = f"__imrsurv_q{len(self.names)}__"
            self.names[key] = f"`{name}`"
            return ast.Name(id=key, ctx=ast.Load())
        return self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if isinstance(node.value, ast.Name) and node.value.id == "numpy":
            return ast.Attribute(value=ast.Name(id="np", ctx=ast.Load()), attr=node.attr,
                                 ctx=ast.Load())
        return node


def _emit(node: ast.AST) -> str:
    """The checked call as text, from the tree (ast.unparse, then the placeholders)."""
    canon = _Canon()
    text = ast.unparse(ast.fix_missing_locations(canon.visit(node)))
    for key, quoted in canon.names.items():
        text = text.replace(key, quoted)
    return text


def parse_formula(formula: object, *, allow_response: bool = False) -> ParsedFormula:
    """Parse and check ``formula`` (never evaluating it); see the module docstring.

    With ``allow_response`` a left-hand side that is one column is returned as
    ``response``; otherwise a left-hand side is an error.
    """
    if not isinstance(formula, str):
        raise DataError([f"formula must be a string such as \"team_size + C(practice)\", not "
                         f"{type(formula).__name__} {formula!r}"], title="invalid formula")
    if len(formula) > MAX_LENGTH:
        raise DataError([f"formula is {len(formula)} characters long; at most {MAX_LENGTH} "
                         "are allowed"], title="invalid formula")
    control = sorted({c for c in formula if not c.isprintable() and c not in " \t\n\r"})
    if control:
        raise _fail(formula.encode("unicode_escape").decode(), repr("".join(control)),
                    "control characters are not allowed")
    depth = deepest = 0
    for c in formula:
        depth += (c == "(") - (c == ")")
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH:
        raise _fail(formula[:80] + "...", "parentheses", f"nested more than {MAX_DEPTH} deep")
    if "{" in formula or "}" in formula:
        raise _fail(formula, "{...}", "Python blocks in braces are not allowed")
    tokens = _tokens(formula)
    response = None
    if ("op", "~") in tokens:
        k = tokens.index(("op", "~"))
        lhs, tokens = tokens[:k], tokens[k + 1:]
        if ("op", "~") in tokens:
            raise _fail(formula, "~", "only one ~ is allowed")
        if lhs:
            if not allow_response:
                raise DataError([f'formula "{formula}" has a left-hand side; give only the '
                                 "covariates (the right-hand side) and pass the time and "
                                 "event columns as start=, stop=, event="],
                                title="invalid formula")
            if len(lhs) != 1 or lhs[0][0] != "name":
                raise _fail(formula, "left-hand side", "the response must be one column name")
            response = lhs[0][1]
    if not tokens:
        raise DataError([f'formula "{formula}" is empty'], title="invalid formula")
    p = _Parser(formula, tokens)
    text, _ = p.sum()
    if p.peek() is not None:
        raise _fail(formula, p.peek()[1], "unexpected here (is an operator missing?)")
    return ParsedFormula(text=formula, canonical=text, columns=tuple(p.columns),
                         response=response, functions=tuple(p.functions))
