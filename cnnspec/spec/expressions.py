"""``${...}`` expressions in block arguments: a tokenizer and a recursive-descent parser, never eval.

Grammar (Python's precedence, loosest first)::

    expression := disjunction ["if" disjunction "else" expression]
    disjunction := conjunction ("or" conjunction)*
    conjunction := negation ("and" negation)*
    negation   := "not" negation | comparison
    comparison := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum)*      # chained as in Python
    sum        := term (("+" | "-") term)*
    term       := unary (("*" | "/" | "//" | "%") unary)*
    unary      := ("-" | "+") unary | primary
    primary    := number | 'string' | name | name "(" [expression ("," expression)*] ")" | "(" expression ")"

Values are ints, floats, booleans and strings (argument values may be any YAML value; only names
are looked up, no attribute access, no indexing). Ints stay ints; ``/`` gives a float; ``//`` and
``%`` follow Python (floor division). Functions: ``min``, ``max``, ``round`` (Python's, half to
even), ``int`` (truncation toward zero) and ``make_divisible(value, divisor[, min_value])``,
torchvision's ``_make_divisible``. Bounded: at most ``MAX_LENGTH`` characters, ``MAX_DEPTH`` levels
of nesting, and integers within ``MAX_INT`` in magnitude after every operation, so that no
expression can run long or build huge numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..errors import did_you_mean

MAX_LENGTH = 500
MAX_DEPTH = 40
MAX_INT = 10**18

Value = int | float | bool | str


class ExpressionError(Exception):
    """A problem in one expression: ``offset`` is the 0-based index of the offending token in it."""

    def __init__(self, message: str, offset: int, *, expected: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.expected = expected
        self.hint = hint


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, name, op, end
    text: str
    offset: int


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>'[^'\\]*'|"[^"\\]*")
  | (?P<op>//|==|!=|<=|>=|[-+*/%()<>,])
""", re.X)
_KEYWORDS = {"and", "or", "not", "if", "else"}
_CONSTANTS = {"true": True, "false": False, "True": True, "False": False}


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters", 0,
                              hint="split the computation over several block arguments")
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            char = text[position]
            raise ExpressionError(f"unexpected character '{char}'", position,
                                  expected="numbers, names, strings, + - * / // % ( ) , and comparisons")
        kind = match.lastgroup
        if kind == "op" and text.startswith("**", position):
            raise ExpressionError("'**' (power) is not supported", position, hint="multiply instead, e.g. c * c")
        if kind != "space":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# The syntax tree: tuples whose first item says what they are, second the token offset.
Node = tuple[Any, ...]


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.position = 0
        self.depth = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.position]

    def take(self) -> Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def at(self, *texts: str) -> bool:
        token = self.token
        return token.kind in ("op", "name") and token.text in texts

    def expect(self, text: str) -> Token:
        if not self.at(text):
            raise self.unexpected(f"'{text}'")
        return self.take()

    def unexpected(self, expected: str) -> ExpressionError:
        token = self.token
        if token.kind == "end":
            return ExpressionError("unexpected end of expression", token.offset, expected=expected)
        return ExpressionError(f"unexpected '{token.text}'", token.offset, expected=expected)

    def parse(self) -> Node:
        if self.token.kind == "end":
            raise ExpressionError("empty expression", 0, expected="an expression such as ${channels * 4}")
        node = self.expression()
        if self.token.kind != "end":
            raise self.unexpected("an operator or the end of the expression")
        return node

    def nested(self, parse: Callable[[], Node]) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression nests deeper than {MAX_DEPTH} levels", self.token.offset)
        try:
            return parse()
        finally:
            self.depth -= 1

    def expression(self) -> Node:
        return self.nested(self._conditional)

    def _conditional(self) -> Node:
        body = self.disjunction()
        if not self.at("if"):
            return body
        offset = self.take().offset
        condition = self.disjunction()
        self.expect("else")
        return ("if", offset, condition, body, self.expression())

    def disjunction(self) -> Node:
        node = self.conjunction()
        while self.at("or"):
            node = ("or", self.take().offset, node, self.conjunction())
        return node

    def conjunction(self) -> Node:
        node = self.negation()
        while self.at("and"):
            node = ("and", self.take().offset, node, self.negation())
        return node

    def negation(self) -> Node:
        if self.at("not"):
            offset = self.take().offset
            return ("not", offset, self.nested(self.negation))
        return self.comparison()

    def comparison(self) -> Node:
        first = self.sum()
        links = []
        while self.at("==", "!=", "<", "<=", ">", ">="):
            token = self.take()
            links.append((token.text, token.offset, self.sum()))
        return ("compare", first[1], first, links) if links else first

    def sum(self) -> Node:
        node = self.term()
        while self.at("+", "-"):
            token = self.take()
            node = ("binary", token.offset, token.text, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.at("*", "/", "//", "%"):
            token = self.take()
            node = ("binary", token.offset, token.text, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.at("-", "+"):
            token = self.take()
            return ("unary", token.offset, token.text, self.nested(self.unary))
        return self.primary()

    def primary(self) -> Node:
        token = self.token
        if token.kind == "number":
            self.take()
            return ("value", token.offset, _number(token))
        if token.kind == "string":
            self.take()
            return ("value", token.offset, token.text[1:-1])
        if token.kind == "op" and token.text == "(":
            self.take()
            node = self.expression()
            self.expect(")")
            return node
        if token.kind == "name" and token.text not in _KEYWORDS:
            self.take()
            if token.text in _CONSTANTS:
                return ("value", token.offset, _CONSTANTS[token.text])
            if self.at("("):
                return self.call(token)
            return ("name", token.offset, token.text)
        raise self.unexpected("a number, a name or '('")

    def call(self, function: Token) -> Node:
        self.take()
        arguments = []
        if not self.at(")"):
            arguments.append(self.expression())
            while self.at(","):
                self.take()
                arguments.append(self.expression())
        self.expect(")")
        return ("call", function.offset, function.text, arguments)


def _number(token: Token) -> int | float:
    if re.fullmatch(r"\d+", token.text):
        if len(token.text.lstrip("0")) > 18:
            raise ExpressionError(f"integer {token.text} is too large", token.offset,
                                  expected=f"integers of at most 18 digits (|n| <= {MAX_INT:.0e})")
        return int(token.text)
    value = float(token.text)
    if not math.isfinite(value):
        raise ExpressionError(f"number {token.text} is too large", token.offset)
    return value


def parse(text: str) -> Node:
    """The syntax tree of ``text`` (the part between ``${`` and ``}``)."""
    return _Parser(tokenize(text)).parse()


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision's ``_make_divisible``: the multiple of ``divisor`` nearest ``value`` (halves round
    up), at least ``min_value`` (default ``divisor``), and raised by one ``divisor`` if rounding lost
    more than 10% of ``value``."""
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Evaluator:
    def __init__(self, names: Mapping[str, Any]):
        self.names = names

    def number(self, node: Node, what: str) -> int | float:
        value = self.eval(node)
        if not _is_number(value):
            raise ExpressionError(f"{what} needs a number, got {_kind(value)} ({value!r})", node[1])
        return value

    def boolean(self, node: Node, what: str) -> bool:
        value = self.eval(node)
        if not isinstance(value, bool):
            raise ExpressionError(f"{what} needs true or false, got {_kind(value)} ({value!r})", node[1],
                                  hint="compare explicitly, e.g. stride == 1")
        return value

    def eval(self, node: Node) -> Any:
        return getattr(self, "_" + node[0])(node)

    def _value(self, node: Node) -> Any:
        return node[2]

    def _name(self, node: Node) -> Any:
        name = node[2]
        if name not in self.names:
            raise ExpressionError(
                f"unknown name '{name}'", node[1],
                expected="one of " + (", ".join(self.names) or "(no names here: numbers only)"),
                hint=did_you_mean(name, list(self.names)))
        value = self.names[name]
        if not isinstance(value, (int, float, str)):
            raise ExpressionError(f"'{name}' is {_kind(value)}, which expressions cannot use", node[1])
        return value

    def _if(self, node: Node) -> Any:
        _, _, condition, body, otherwise = node
        return self.eval(body) if self.boolean(condition, "'if'") else self.eval(otherwise)

    def _or(self, node: Node) -> bool:
        return self.boolean(node[2], "'or'") or self.boolean(node[3], "'or'")

    def _and(self, node: Node) -> bool:
        return self.boolean(node[2], "'and'") and self.boolean(node[3], "'and'")

    def _not(self, node: Node) -> bool:
        return not self.boolean(node[2], "'not'")

    def _compare(self, node: Node) -> bool:
        left = self.eval(node[2])
        for operator, offset, right_node in node[3]:
            right = self.eval(right_node)
            if operator in ("==", "!="):
                same = left == right if _is_number(left) == _is_number(right) else False
                result = same if operator == "==" else not same
            else:
                if not (_is_number(left) and _is_number(right)):
                    raise ExpressionError(
                        f"'{operator}' needs two numbers, got {_kind(left)} and {_kind(right)}", offset)
                result = {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[operator]
            if not result:
                return False
            left = right
        return True

    def _unary(self, node: Node) -> int | float:
        value = self.number(node[3], f"unary '{node[2]}'")
        return -value if node[2] == "-" else value

    def _binary(self, node: Node) -> int | float:
        _, offset, operator, left_node, right_node = node
        left = self.number(left_node, f"'{operator}'")
        right = self.number(right_node, f"'{operator}'")
        if operator in ("/", "//", "%") and right == 0:
            raise ExpressionError(f"division by zero in '{operator}'", offset,
                                  hint="guard it, e.g. x // y if y != 0 else 0")
        result = {
            "+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right,
            "/": lambda: left / right, "//": lambda: left // right, "%": lambda: left % right,
        }[operator]()
        return _checked(result, offset)

    def _call(self, node: Node) -> Any:
        _, offset, function, argument_nodes = node
        if function not in _FUNCTIONS:
            raise ExpressionError(f"unknown function '{function}'", offset,
                                  expected="one of " + ", ".join(_FUNCTIONS), hint=did_you_mean(function, _FUNCTIONS))
        low, high, implementation = _FUNCTIONS[function]
        if not low <= len(argument_nodes) <= high:
            count = f"{low}" if low == high else f"{low} to {high}" if high < 99 else f"at least {low}"
            raise ExpressionError(f"{function}() takes {count} arguments, got {len(argument_nodes)}", offset)
        arguments = [self.number(argument, f"{function}()") for argument in argument_nodes]
        return _checked(implementation(arguments, offset), offset)


def _checked(result: int | float, offset: int) -> int | float:
    if isinstance(result, int) and abs(result) > MAX_INT:
        raise ExpressionError(f"integer result {result:.3e} is too large", offset,
                              expected=f"|n| <= {MAX_INT:.0e}")
    if isinstance(result, float) and not math.isfinite(result):
        raise ExpressionError("result is not a finite number", offset)
    return result


def _round(arguments: list[Any], offset: int) -> int | float:
    if len(arguments) == 1:
        return round(arguments[0])
    digits = arguments[1]
    if not isinstance(digits, int) or abs(digits) > 30:
        raise ExpressionError("round()'s digits must be an integer between -30 and 30", offset)
    return round(arguments[0], digits)


def _make_divisible(arguments: list[Any], offset: int) -> int:
    divisor = arguments[1]
    if not isinstance(divisor, int) or divisor <= 0:
        raise ExpressionError(f"make_divisible()'s divisor must be a positive integer, got {divisor!r}", offset)
    minimum = arguments[2] if len(arguments) > 2 else None
    if minimum is not None and not isinstance(minimum, int):
        raise ExpressionError(f"make_divisible()'s min_value must be an integer, got {minimum!r}", offset)
    return make_divisible(arguments[0], divisor, minimum)


_FUNCTIONS: dict[str, tuple[int, int, Callable[[list[Any], int], Any]]] = {
    "min": (1, 99, lambda arguments, offset: min(arguments)),
    "max": (1, 99, lambda arguments, offset: max(arguments)),
    "round": (1, 2, _round),
    "int": (1, 1, lambda arguments, offset: int(arguments[0])),
    "make_divisible": (2, 3, _make_divisible),
}


def evaluate(text: str, names: Mapping[str, Any]) -> Any:
    """The value of expression ``text`` with ``names`` bound (block arguments, ``index``, ``count``)."""
    return _Evaluator(names).eval(parse(text))
