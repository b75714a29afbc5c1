"""A small declarative language for rule segments: tokenizer, parser, AST, evaluation.

Grammar (keywords are case-insensitive)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := operand [ ("==" | "!=" | "<" | "<=" | ">" | ">=") operand
                          | ["not"] "in" "[" [literal ("," literal)* [","]] "]" ]
    operand    := NUMBER | STRING | "true" | "false" | "null" | NAME | "(" expr ")"
    NAME       := identifier ("." identifier)*        e.g. rfm.monetary_mean
    STRING     := "..." | '...'   (backslash escapes \\ \" \' \n \t)
    NUMBER     := ["-"] digits ["." digits] [("e"|"E") ["+"|"-"] digits]

The text is tokenized and parsed by hand - nothing is ever passed to
``eval`` - into an immutable AST that evaluates on one customer's attribute
dict (:meth:`Rule.matches`) or on columnar numpy arrays for a whole
population at once (:meth:`Rule.mask`).

Semantics: a missing attribute (absent key, ``None``, NaN) makes every
comparison with it false except ``== null`` (and ``!= null`` is true only
when present); comparing a number with a string is false rather than an
error, so one odd record cannot stop a segment; a bare name is true when its
value is truthy (``has_export and region == "North"``).

Every syntax error is a :class:`RuleSyntaxError` naming the line, column and
showing a caret under the offending character.

Examples:
    >>> rule = compile_rule('region == "North" and rfm.monetary_mean > 138')
    >>> rule.matches({"region": "North", "rfm": {"monetary_mean": 150.0}})
    True
    >>> rule.matches({"region": "North", "rfm.monetary_mean": 100})
    False
    >>> sorted(rule.names)
    ['region', 'rfm.monetary_mean']
    >>> import numpy as np
    >>> cols = {"region": np.array(["North", "South", "North"], dtype=object),
    ...         "rfm.monetary_mean": np.array([150.0, 200.0, np.nan])}
    >>> rule.mask(cols).tolist()
    [True, False, False]
    >>> compile_rule('tariff in ["prepaid"] and not (rfm.r_score <= 2)').source
    'tariff in ["prepaid"] and not (rfm.r_score <= 2)'
    >>> compile_rule('region = "North"')
    Traceback (most recent call last):
    ...
    processors.rules.language.RuleSyntaxError: line 1, column 8: unexpected '=' (did you mean '=='?)
      region = "North"
             ^
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Scalar = str | float | int | bool | None
CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]

_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}


class RuleSyntaxError(ValueError):
    """An invalid rule, with the position of the error.

    Attributes:
        kind: machine-readable kind (``unexpected_character``, ``unterminated_string``,
            ``invalid_number``, ``unexpected_token``, ``unexpected_end``, ``trailing_input``,
            ``invalid_list``, ``unknown_attribute``, ``type_mismatch``, ``empty``).
        offset, line, column: 0-based offset, 1-based line and column.
        text: the rule text.
    """

    def __init__(self, kind: str, message: str, text: str, offset: int) -> None:
        self.kind = kind
        self.text = text
        self.offset = offset
        self.line = text.count("\n", 0, offset) + 1
        line_start = text.rfind("\n", 0, offset) + 1
        self.column = offset - line_start + 1
        line_end = text.find("\n", offset)
        src_line = text[line_start : line_end if line_end >= 0 else len(text)]
        self.detail = message
        super().__init__(
            f"line {self.line}, column {self.column}: {message}\n  {src_line}\n  {' ' * (self.column - 1)}^"
        )


# -- tokenizer ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token; ``kind`` is NAME, NUMBER, STRING, OP, KEYWORD, PUNCT or END."""

    kind: str
    value: Any
    offset: int
    text: str


def tokenize(text: str) -> list[Token]:
    """Split a rule into tokens (ending with an END token).

    Examples:
        >>> [(t.kind, t.value) for t in tokenize('a.b >= -1.5e2 or x in ["y"]')][:5]
        [('NAME', 'a.b'), ('OP', '>='), ('NUMBER', -150.0), ('KEYWORD', 'or'), ('NAME', 'x')]
    """
    out: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        start = i
        if ch in "\"'":
            quote, i, buf = ch, i + 1, []
            while True:
                if i >= n or text[i] == "\n":
                    raise RuleSyntaxError("unterminated_string", "unterminated string (missing closing "
                                          f"{quote})", text, start)
                c = text[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise RuleSyntaxError("unterminated_string", "unterminated string (missing closing "
                                              f"{quote})", text, start)
                    esc = text[i + 1]
                    mapped = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}.get(esc)
                    if mapped is None:
                        raise RuleSyntaxError("unexpected_character", f"unknown escape '\\{esc}' in string",
                                              text, i)
                    buf.append(mapped)
                    i += 2
                    continue
                if c == quote:
                    i += 1
                    break
                buf.append(c)
                i += 1
            out.append(Token("STRING", "".join(buf), start, text[start:i]))
            continue
        if ch.isdigit() or (ch == "-" and i + 1 < n and (text[i + 1].isdigit() or text[i + 1] == ".")) or (
            ch == "." and i + 1 < n and text[i + 1].isdigit()
        ):
            i += 1
            while i < n and (text[i].isalnum() or text[i] in "._" or (text[i] in "+-" and text[i - 1] in "eE")):
                i += 1
            raw = text[start:i]
            try:
                value: float | int = int(raw) if raw.lstrip("-").isdigit() else float(raw)
            except ValueError:
                raise RuleSyntaxError("invalid_number", f"invalid number {raw!r}", text, start) from None
            if isinstance(value, float) and not math.isfinite(value):
                raise RuleSyntaxError("invalid_number", f"invalid number {raw!r}", text, start)
            out.append(Token("NUMBER", value, start, raw))
            continue
        if ch.isalpha() or ch == "_":
            while i < n and (text[i].isalnum() or text[i] == "_"):
                i += 1
            while i < n and text[i] == ".":
                if i + 1 < n and (text[i + 1].isalpha() or text[i + 1] == "_"):
                    i += 1
                    while i < n and (text[i].isalnum() or text[i] == "_"):
                        i += 1
                else:
                    raise RuleSyntaxError("unexpected_character", "a name cannot end with '.'", text, i)
            raw = text[start:i]
            if raw.lower() in _KEYWORDS:
                out.append(Token("KEYWORD", raw.lower(), start, raw))
            else:
                out.append(Token("NAME", raw, start, raw))
            continue
        two = text[i : i + 2]
        if two in ("==", "!=", "<=", ">="):
            out.append(Token("OP", two, start, two))
            i += 2
            continue
        if ch in "<>":
            out.append(Token("OP", ch, start, ch))
            i += 1
            continue
        if ch in "()[],":
            out.append(Token("PUNCT", ch, start, ch))
            i += 1
            continue
        if ch == "=":
            raise RuleSyntaxError("unexpected_character", "unexpected '=' (did you mean '=='?)", text, i)
        if ch == "!":
            raise RuleSyntaxError("unexpected_character", "unexpected '!' (did you mean '!=' or 'not'?)", text, i)
        if ch == "&" or ch == "|":
            word = "and" if ch == "&" else "or"
            raise RuleSyntaxError("unexpected_character", f"unexpected {ch!r} (use '{word}')", text, i)
        raise RuleSyntaxError("unexpected_character", f"unexpected character {ch!r}", text, i)
    out.append(Token("END", None, n, ""))
    return out


# -- AST --------------------------------------------------------------------------------------------
class Node:
    """Base of AST nodes: scalar and columnar evaluation, names, canonical source."""

    def eval(self, attrs: Mapping[str, Any]) -> Any:
        """Value on one attribute mapping."""
        raise NotImplementedError

    def columns(self, cols: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """Value on columnar data (length-n arrays)."""
        raise NotImplementedError

    def names(self) -> set[str]:
        """Attribute names referenced."""
        return set()

    def source(self, top: bool = True) -> str:
        """Canonical text of this node."""
        raise NotImplementedError


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def _truthy(v: Any) -> bool:
    return not _missing(v) and bool(v)


def compare(a: Any, op: str, b: Any) -> bool:
    """Scalar comparison with the language's missing/type rules.

    Examples:
        >>> compare(None, "==", None), compare(None, "<", 3), compare("a", "<", 3), compare(2, "<", 3.5)
        (True, False, False, True)
    """
    if _missing(a) or _missing(b):
        both = _missing(a) and _missing(b)
        return both if op == "==" else (not both) if op == "!=" else False
    if _number(a) and _number(b):
        pass
    elif isinstance(a, bool | np.bool_) and isinstance(b, bool | np.bool_):
        if op not in ("==", "!="):
            return False
    elif isinstance(a, str) and isinstance(b, str):
        pass
    else:
        return op == "!="
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def lookup(attrs: Mapping[str, Any], path: str) -> Any:
    """Attribute by dotted name: a flat key first, then nested mappings.

    Examples:
        >>> lookup({"rfm": {"r_score": 4}}, "rfm.r_score"), lookup({"rfm.r_score": 5}, "rfm.r_score")
        (4, 5)
        >>> lookup({}, "health.state") is None
        True
    """
    if path in attrs:
        return attrs[path]
    cur: Any = attrs
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _const(v: Scalar, n: int) -> np.ndarray:
    if _number(v):
        return np.full(n, float(v))  # type: ignore[arg-type]
    arr = np.empty(n, dtype=object)
    arr[:] = [v] * n
    return arr


def _numeric(a: np.ndarray) -> bool:
    return a.dtype.kind in "fiu"


_NP_OPS = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
           ">=": np.greater_equal}
_vcompare = np.frompyfunc(compare, 3, 1)
_vtruthy = np.frompyfunc(_truthy, 1, 1)


@dataclass(frozen=True)
class Literal_(Node):
    """A constant: number, string, true/false or null."""

    value: Scalar

    def eval(self, attrs: Mapping[str, Any]) -> Any:
        return self.value

    def columns(self, cols: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        return _const(self.value, n)

    def source(self, top: bool = True) -> str:
        v = self.value
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(v)


@dataclass(frozen=True)
class Name(Node):
    """An attribute reference (dotted path)."""

    path: str
    offset: int = field(default=0, compare=False)

    def eval(self, attrs: Mapping[str, Any]) -> Any:
        return lookup(attrs, self.path)

    def columns(self, cols: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        col = cols.get(self.path)
        if col is None:
            return _const(None, n)
        return np.asarray(col)

    def names(self) -> set[str]:
        return {self.path}

    def source(self, top: bool = True) -> str:
        return self.path


@dataclass(frozen=True)
class Compare(Node):
    """``left op right``."""

    op: CompareOp
    left: Node
    right: Node

    def eval(self, attrs: Mapping[str, Any]) -> bool:
        return compare(self.left.eval(attrs), self.op, self.right.eval(attrs))

    def columns(self, cols: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        a, b = self.left.columns(cols, n), self.right.columns(cols, n)
        if _numeric(a) and _numeric(b):
            af, bf = a.astype(float), b.astype(float)
            nan_a, nan_b = np.isnan(af), np.isnan(bf)
            with np.errstate(invalid="ignore"):
                res = _NP_OPS[self.op](af, bf)
            if self.op == "==":
                return (res & ~nan_a & ~nan_b) | (nan_a & nan_b)
            if self.op == "!=":
                return (res & ~(nan_a & nan_b)) | (nan_a ^ nan_b)
            return res & ~nan_a & ~nan_b
        return _vcompare(a, self.op, b).astype(bool)

    def names(self) -> set[str]:
        return self.left.names() | self.right.names()

    def source(self, top: bool = True) -> str:
        return f"{self.left.source(False)} {self.op} {self.right.source(False)}"


@dataclass(frozen=True)
class In(Node):
    """``operand [not] in [literals]``."""

    operand: Node
    values: tuple[Scalar, ...]
    negated: bool = False

    def eval(self, attrs: Mapping[str, Any]) -> bool:
        v = self.operand.eval(attrs)
        if _missing(v):
            return False
        hit = any(compare(v, "==", x) for x in self.values)
        return hit != self.negated

    def columns(self, cols: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        a = self.operand.columns(cols, n)
        if _numeric(a):
            af = a.astype(float)
            nums = [float(x) for x in self.values if _number(x)]  # type: ignore[arg-type]
            hit = np.isin(af, nums)
            present = ~np.isnan(af)
        else:
            hit = np.zeros(n, dtype=bool)
            for x in self.values:
                hit |= _vcompare(a, "==", x).astype(bool)
            present = ~_vcompare(a, "==", None).astype(bool)
        return (hit != self.negated) & present

    def names(self) -> set[str]:
        return self.operand.names()

    def source(self, top: bool = True) -> str:
        items = ", ".join(Literal_(v).source() for v in self.values)
        return f"{self.operand.source(False)} {'not in' if self.negated else 'in'} [{items}]"


@dataclass(frozen=True)
class Not(Node):
    """``not operand``."""

    operand: Node

    def eval(self, attrs: Mapping[str, Any]) -> bool:
        return not _truthy(self.operand.eval(attrs))

    def columns(self, cols: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        return ~_truth_columns(self.operand.columns(cols, n))

    def names(self) -> set[str]:
        return self.operand.names()

    def source(self, top: bool = True) -> str:
        inner = self.operand.source(False)
        if isinstance(self.operand, And | Or | Compare | In):
            inner = f"({self.operand.source(True)})"
        return f"not {inner}"


def _truth_columns(a: np.ndarray) -> np.ndarray:
    if a.dtype == bool:
        return a
    if _numeric(a):
        af = a.astype(float)
        return (af != 0) & ~np.isnan(af)
    return _vtruthy(a).astype(bool)


@dataclass(frozen=True)
class And(Node):
    """Conjunction of two or more operands."""

    items: tuple[Node, ...]

    def eval(self, attrs: Mapping[str, Any]) -> bool:
        return all(_truthy(x.eval(attrs)) for x in self.items)

    def columns(self, cols: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        out = np.ones(n, dtype=bool)
        for x in self.items:
            out &= _truth_columns(x.columns(cols, n))
        return out

    def names(self) -> set[str]:
        return set().union(*(x.names() for x in self.items))

    def source(self, top: bool = True) -> str:
        parts = [f"({x.source()})" if isinstance(x, Or) else x.source(False) for x in self.items]
        return " and ".join(parts)


@dataclass(frozen=True)
class Or(Node):
    """Disjunction of two or more operands."""

    items: tuple[Node, ...]

    def eval(self, attrs: Mapping[str, Any]) -> bool:
        return any(_truthy(x.eval(attrs)) for x in self.items)

    def columns(self, cols: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        for x in self.items:
            out |= _truth_columns(x.columns(cols, n))
        return out

    def names(self) -> set[str]:
        return set().union(*(x.names() for x in self.items))

    def source(self, top: bool = True) -> str:
        s = " or ".join(x.source(False) for x in self.items)
        return s if top else f"({s})"


# -- parser -----------------------------------------------------------------------------------------
class _Parser:
    """Recursive descent over the token list, one method per grammar rule."""

    def __init__(self, text: str, known_names: Collection[str] | None) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.known = set(known_names) if known_names is not None else None

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _fail(self, expected: str, tok: Token | None = None) -> RuleSyntaxError:
        t = tok or self.tok
        if t.kind == "END":
            return RuleSyntaxError("unexpected_end", f"unexpected end of rule, expected {expected}", self.text,
                                   t.offset)
        return RuleSyntaxError("unexpected_token", f"expected {expected}, found {t.text!r}", self.text, t.offset)

    def _accept(self, kind: str, value: Any = None) -> Token | None:
        t = self.tok
        if t.kind == kind and (value is None or t.value == value):
            self.i += 1
            return t
        return None

    def parse(self) -> Node:
        if self.tok.kind == "END":
            raise RuleSyntaxError("empty", "empty rule", self.text, 0)
        node = self.or_expr()
        if self.tok.kind != "END":
            t = self.tok
            what = "')' without a matching '('" if t.value == ")" else repr(t.text)
            raise RuleSyntaxError("trailing_input", f"unexpected {what} after a complete expression "
                                  "(missing 'and'/'or'?)", self.text, t.offset)
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self._accept("KEYWORD", "or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self._accept("KEYWORD", "and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Node:
        if self.tok.kind == "KEYWORD" and self.tok.value == "not":
            self.i += 1
            return Not(self.not_expr())
        return self.comparison()

    def comparison(self) -> Node:
        left_tok = self.tok
        left = self.operand()
        t = self.tok
        if t.kind == "OP":
            self.i += 1
            right_tok = self.tok
            right = self.operand()
            self._check_types(left, right, left_tok, right_tok, t)
            return Compare(t.value, left, right)
        negated = False
        if t.kind == "KEYWORD" and t.value == "not" and self.tokens[self.i + 1].value == "in":
            self.i += 1
            negated = True
        if self._accept("KEYWORD", "in"):
            return In(left, self.literal_list(), negated)
        return left

    def _check_types(self, left: Node, right: Node, lt: Token, rt: Token, op: Token) -> None:
        """Two literals of incompatible types (``1 < "a"``) can never match: refuse them."""
        if isinstance(left, Literal_) and isinstance(right, Literal_):
            a, b = left.value, right.value
            if a is not None and b is not None and (isinstance(a, str) != isinstance(b, str)):
                raise RuleSyntaxError("type_mismatch", f"cannot compare {lt.text} with {rt.text}", self.text,
                                      op.offset)
        for node, tok in ((left, lt), (right, rt)):
            if op.value in ("<", "<=", ">", ">=") and isinstance(node, Literal_) and (
                node.value is None or isinstance(node.value, bool)
            ):
                raise RuleSyntaxError("type_mismatch", f"{tok.text} cannot be ordered with {op.value}", self.text,
                                      tok.offset)

    def literal_list(self) -> tuple[Scalar, ...]:
        if not self._accept("PUNCT", "["):
            raise self._fail("'[' to start a list after 'in'")
        values: list[Scalar] = []
        if self._accept("PUNCT", "]"):
            return ()
        while True:
            t = self.tok
            if t.kind in ("NUMBER", "STRING"):
                values.append(t.value)
            elif t.kind == "KEYWORD" and t.value in ("true", "false", "null"):
                values.append({"true": True, "false": False, "null": None}[t.value])
            elif t.kind == "END":
                raise self._fail("a literal or ']'")
            else:
                raise RuleSyntaxError("invalid_list", f"list items must be literals, found {t.text!r}",
                                      self.text, t.offset)
            self.i += 1
            if self._accept("PUNCT", "]"):
                return tuple(values)
            if not self._accept("PUNCT", ","):
                raise self._fail("',' or ']'")
            if self._accept("PUNCT", "]"):
                return tuple(values)

    def operand(self) -> Node:
        t = self.tok
        if t.kind in ("NUMBER", "STRING"):
            self.i += 1
            return Literal_(t.value)
        if t.kind == "KEYWORD" and t.value in ("true", "false", "null"):
            self.i += 1
            return Literal_({"true": True, "false": False, "null": None}[t.value])
        if t.kind == "NAME":
            self.i += 1
            if self.known is not None and t.value not in self.known:
                hint = sorted(self.known)[:8]
                raise RuleSyntaxError("unknown_attribute", f"unknown attribute {t.value!r} (known: "
                                      f"{', '.join(hint)}{', ...' if len(self.known) > 8 else ''})", self.text,
                                      t.offset)
            return Name(t.value, t.offset)
        if t.kind == "PUNCT" and t.value == "(":
            self.i += 1
            node = self.or_expr()
            if not self._accept("PUNCT", ")"):
                if self.tok.kind == "END":
                    raise RuleSyntaxError("unexpected_end", "unexpected end of rule, expected ')' to close the "
                                          "'(' opened here", self.text, t.offset)
                raise self._fail("')'")
            return node
        raise self._fail("a value, a name, 'not' or '('")


@dataclass(frozen=True)
class Rule:
    """A compiled rule: its source, AST and referenced attribute names."""

    text: str
    ast: Node

    @property
    def names(self) -> set[str]:
        """Attribute names the rule reads."""
        return self.ast.names()

    @property
    def source(self) -> str:
        """Canonical text (normalised spacing/keywords); compiles to the same AST."""
        return self.ast.source()

    def matches(self, attrs: Mapping[str, Any]) -> bool:
        """Whether one customer's attributes satisfy the rule."""
        return _truthy(self.ast.eval(attrs))

    def mask(self, columns: Mapping[str, np.ndarray], n: int | None = None) -> np.ndarray:
        """Boolean mask over a population given as columns (flat dotted names -> arrays).

        Numeric columns use NaN for missing values, others ``None`` (object dtype).
        """
        if n is None:
            n = len(next(iter(columns.values()))) if columns else 0
        return _truth_columns(self.ast.columns(columns, n))


def compile_rule(text: str, known_names: Collection[str] | None = None) -> Rule:
    """Parse a rule; with ``known_names``, names outside it are errors too."""
    return Rule(text, _Parser(text, known_names).parse())
