"""``${...}`` expressions in block arguments: grammar, errors (whole messages), and the rounding
helpers checked against torchvision's own ``_make_divisible`` and Python's ``round``.

Expected values are worked out by hand from Python's rules (precedence, floor division, half-to-even
rounding); the helpers are compared with the reference implementations, never with themselves.
"""

from __future__ import annotations

import operator
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnspec.errors import SpecError
from cnnspec.spec.expressions import ExpressionError, evaluate
from cnnspec.spec.model import parse_spec

GRAMMAR = [
    ("1 + 2 * 3", {}, 7),
    ("(1 + 2) * 3", {}, 9),
    ("10 - 4 - 3", {}, 3),  # left-associative
    ("2 * 3 // 4", {}, 1),  # (2 * 3) // 4
    ("7 // 2", {}, 3),
    ("-7 // 2", {}, -4),  # floor, as Python
    ("-7 % 3", {}, 2),
    ("7 / 2", {}, 3.5),
    ("8 / 2", {}, 4.0),  # '/' always gives a float
    ("-c * 2", {"c": 3}, -6),
    ("- -c", {"c": 3}, 3),
    ("c * t", {"c": 16, "t": 6}, 96),
    ("max(1, c // 4)", {"c": 3}, 1),
    ("min(4, 9, 2)", {}, 2),
    ("int(7.9)", {}, 7),
    ("int(-7.9)", {}, -7),
    ("round(2.5)", {}, 2),
    ("round(3.5)", {}, 4),
    ("round(0.125, 2)", {}, 0.12),
    ("make_divisible(16 * 0.25, 8)", {}, 8),
    ("make_divisible(72 * 0.25, 8)", {}, 24),  # 18 -> 16 loses > 10%, so 24
    ("make_divisible(30, 8, 16)", {}, 32),
    ("1 < 2 < 3", {}, True),
    ("3 > 2 > 2", {}, False),  # chained: 3 > 2 and 2 > 2
    ("1 == 1.0", {}, True),
    ("s == 1 and c == o", {"s": 1, "c": 4, "o": 4}, True),
    ("not s == 1 or false", {"s": 2}, True),  # not binds looser than ==
    ("true or 1 // 0 == 0", {}, True),  # short-circuit: the division never runs
    ("false and 1 // 0 == 0", {}, False),
    ("1 if index == 0 else 2", {"index": 0}, 1),
    ("1 if index == 0 else 2", {"index": 3}, 2),
    ("1 if false else 2 if false else 3", {}, 3),  # right-nested conditional
    ("0.2 * index / count", {"index": 3, "count": 4}, 0.15000000000000002),
    ("mode == 'row'", {"mode": "row"}, True),
    ("'hardswish' if hs else 'relu'", {"hs": False}, "relu"),
    ("1e-3 * 2", {}, 0.002),
    ("((((1))))", {}, 1),
]


@pytest.mark.parametrize(("text", "names", "expected"), GRAMMAR, ids=[case[0] for case in GRAMMAR])
def test_grammar(text, names, expected):
    value = evaluate(text, names)
    assert value == expected and type(value) is type(expected)


def _torchvision_make_divisible():
    from torchvision.models._utils import _make_divisible

    return _make_divisible


def test_make_divisible_equals_torchvision_on_a_sweep():
    reference = _torchvision_make_divisible()
    rng = random.Random(0)
    values = [i / 4 for i in range(1, 2001)] + [rng.uniform(0.1, 5000) for _ in range(1000)]
    checked = 0
    for divisor in (1, 2, 3, 4, 8, 16, 32):
        for value in values:
            expected = reference(value, divisor)
            got = evaluate("make_divisible(v, d)", {"v": value, "d": divisor})
            assert got == expected, (value, divisor)
            checked += 1
        for minimum in (None, 8, 64):
            assert evaluate("make_divisible(37.5, d, m)" if minimum else "make_divisible(37.5, d)",
                            {"d": divisor, "m": minimum or 0}) == reference(37.5, divisor, minimum)
    assert checked == 7 * 3000


def test_make_divisible_the_mobilenet_v3_widths():
    reference = _torchvision_make_divisible()
    for width in (0.5, 0.75, 1.0, 1.25):
        for channels in (16, 24, 40, 48, 72, 88, 96, 120, 144, 240, 288, 576, 960):
            text = f"make_divisible({channels} * {width}, 8)"
            assert evaluate(text, {}) == reference(channels * width, 8)


def test_round_is_pythons_half_to_even():
    rng = random.Random(1)
    halves = [n + 0.5 for n in range(-200, 200)]
    randoms = [rng.uniform(-1e6, 1e6) for _ in range(3000)]
    for value in halves + randoms:
        assert evaluate("round(v)", {"v": value}) == round(value)
        assert evaluate("round(v, 2)", {"v": value}) == round(value, 2)
    assert [evaluate(f"round({v})", {}) for v in (0.5, 1.5, 2.5, -0.5, -1.5)] == [0, 2, 2, 0, -2]


ERRORS = [
    ("c *", "unexpected end of expression", 3),
    ("(c + 1", "unexpected end of expression", 6),
    ("c ) 1", "unexpected ')'", 2),
    ("", "empty expression", 0),
    ("c $ 2", "unexpected character '$'", 2),
    ("c ** 2", "'**' (power) is not supported", 2),
    ("c * d", "unknown name 'd'", 4),
    ("pow(c, 2)", "unknown function 'pow'", 0),
    ("min()", "min() takes at least 1 arguments, got 0", 0),
    ("int(1, 2)", "int() takes 1 arguments, got 2", 0),
    ("c // 0", "division by zero in '//'", 2),
    ("c % (c - c)", "division by zero in '%'", 2),
    ("c + mode", "'+' needs a number, got a string ('row')", 4),
    ("c if c else 1", "'if' needs true or false, got a number (4)", 5),
    ("c < mode", "'<' needs two numbers, got a number and a string", 2),
    ("make_divisible(c, 0)", "make_divisible()'s divisor must be a positive integer, got 0", 0),
    ("1000000000 * 1000000000 * 10", "integer result 1.000e+19 is too large", 24),
    ("1e300 * 1e300", "result is not a finite number", 6),
    ("int(1e300)", "integer result 1.000e+300 is too large", 0),
    ("1234567890123456789", "integer 1234567890123456789 is too large", 0),
    ("(" * 50 + "1" + ")" * 50, "expression nests deeper than 40 levels", 40),
    ("1+" * 300 + "1", "expression is longer than 500 characters", 0),
]


@pytest.mark.parametrize(("text", "message", "offset"), ERRORS, ids=[case[1] for case in ERRORS])
def test_expression_errors(text, message, offset):
    with pytest.raises(ExpressionError) as caught:
        evaluate(text, {"c": 4, "mode": "row"})
    assert (caught.value.message, caught.value.offset) == (message, offset)


def _render(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "net.yaml")
    return caught.value.render()


SPEC = """\
name: net
input: {channels: 3, height: 8, width: 8}
blocks:
  b:
    args: {c: 4, hidden: "${c * 6}"}
    layers:
      - {type: conv2d, out_channels: "%s", kernel_size: 1}
layers:
  - {block: b, name: s, repeat: 2, with: {c: 8}}
"""


def test_error_points_at_the_token_inside_the_value():
    assert _render(SPEC % "${hidden * wdth}") == """\
net.yaml:7:50: error: in expression '${hidden * wdth}': unknown name 'wdth'
    7 |       - {type: conv2d, out_channels: "${hidden * wdth}", kernel_size: 1}
      |                                                  ^
  expected: one of index, count, c, hidden
  note: in block 'b' used as 's' at line 9, copy 0"""


def test_syntax_error_in_an_argument_default_points_into_the_default():
    """The caret sits where something was expected: under the closing brace."""
    text = SPEC.replace('"${c * 6}"', '"${c * }"') % "${hidden}"
    assert _render(text) == """\
net.yaml:5:33: error: in expression '${c * }': unexpected end of expression
    5 |     args: {c: 4, hidden: "${c * }"}
      |                                 ^
  expected: a number, a name or '('
  note: in block 'b' used as 's' at line 9, copy 0"""


def test_a_float_where_an_int_is_needed_is_the_usual_located_error():
    assert _render(SPEC % "${hidden / 2}") == """\
net.yaml:7:38: error: out_channels must be a valid integer (conv2d layer 's_0_conv2d_1')
    7 |       - {type: conv2d, out_channels: "${hidden / 2}", kernel_size: 1}
      |                                      ^
  expected: Number of filters (output channels).
  received: out_channels=24.0
  hint: write an integer (in an expression '/' always gives a float: use '//', int() or round())
  note: in block 'b' used as 's' at line 9, copy 0
net.yaml:7:38: error: out_channels must be a valid integer (conv2d layer 's_1_conv2d_1')
    7 |       - {type: conv2d, out_channels: "${hidden / 2}", kernel_size: 1}
      |                                      ^
  expected: Number of filters (output channels).
  received: out_channels=24.0
  hint: write an integer (in an expression '/' always gives a float: use '//', int() or round())
  note: in block 'b' used as 's' at line 9, copy 1
2 errors"""


def test_text_around_an_expression_is_an_error():
    assert _render(SPEC % "x${hidden}") == """\
net.yaml:7:38: error: an expression must be the whole value: '${' ... '}' with nothing around it
    7 |       - {type: conv2d, out_channels: "x${hidden}", kernel_size: 1}
      |                                      ^
  received: 'x${hidden}'
  hint: write the whole value as one expression, e.g. "${channels * 4}"
  note: in block 'b' used as 's' at line 9, copy 0"""


def test_unquoted_expression_in_a_flow_mapping_gets_a_quoting_hint():
    assert _render(SPEC.replace('"%s"', "${c}")) == """\
net.yaml:7:39: error: YAML syntax error: expected ',' or '}', but got '{'
    7 |       - {type: conv2d, out_channels: ${c}, kernel_size: 1}
      |                                       ^
  hint: quote an expression inside {...} or [...]: out_channels: "${channels * 4}"
  note: while parsing a flow mapping that starts at line 7, column 9"""


def test_index_and_count_are_reserved_argument_names():
    text = SPEC.replace("{c: 4,", "{c: 4, index: 1,") % "${c}"
    assert _render(text) == """\
net.yaml:5:18: error: block argument 'index' has a reserved name: every copy already has 'index' and 'count'
    5 |     args: {c: 4, index: 1, hidden: "${c * 6}"}
      |                  ^
  hint: rename the argument, e.g. 'index_'"""


def test_top_level_values_may_hold_numbers_only():
    text = "name: net\ninput: {channels: 3, height: 8, width: 8}\nlayers:\n  - {type: conv2d, out_channels: \"${c}\", kernel_size: 1}\n"
    assert _render(text) == """\
net.yaml:4:34: error: unknown block argument '$c'
    4 |   - {type: conv2d, out_channels: "${c}", kernel_size: 1}
      |                                  ^
  expected: one of (no arguments: numbers only here)"""


def test_expressions_shape_a_network():
    """index/count per copy, defaults from earlier arguments, use-site expressions, conditionals."""
    spec = parse_spec("""\
name: net
input: {channels: 3, height: 8, width: 8}
blocks:
  b:
    args: {c: 4, t: 6, hidden: "${c * t}", project: "${index == 0}"}
    layers:
      - {type: conv2d, name: expand, out_channels: $hidden, kernel_size: 1}
      - {type: conv2d, name: squeeze, out_channels: "${max(1, c // 4)}", kernel_size: 1}
      - {type: dropout, name: drop, p: "${0.2 * index / count}"}
      - {type: conv2d, name: down, inputs: [input], out_channels: "${make_divisible(hidden * 0.25, 8)}", kernel_size: 1, when: $project}
layers:
  - {block: b, name: s, repeat: 2, with: {c: "${2 * 8}"}, first: {t: 1}}
""")
    layers = {node.name: node.layer for node in spec.nodes}
    # copy 0: c = 16, t = 1 -> hidden 16; copy 1: t = 6 -> hidden 96
    assert layers["s_0_expand"].out_channels == 16 and layers["s_1_expand"].out_channels == 96
    assert layers["s_0_squeeze"].out_channels == 4
    assert (layers["s_0_drop"].p, layers["s_1_drop"].p) == (0.0, 0.1)
    assert layers["s_0_down"].out_channels == 8 and "s_1_down" not in layers  # 16 / 4 = 4 -> 8


def test_block_style_needs_no_quotes_and_errors_still_point_at_the_token():
    text = """\
name: net
input: {channels: 3, height: 8, width: 8}
blocks:
  b:
    args:
      c: 4
      hidden: ${c * 4 if c > 2 else max(1, c // 4)}
    layers:
      - type: conv2d
        out_channels: ${hidden // 0}
        kernel_size: 1
layers:
  - {block: b, name: s}
"""
    assert _render(text) == """\
net.yaml:10:32: error: in expression '${hidden // 0}': division by zero in '//'
   10 |         out_channels: ${hidden // 0}
      |                                ^
  hint: guard it, e.g. x // y if y != 0 else 0
  note: in block 'b' used as 's' at line 13"""
    spec = parse_spec(text.replace("hidden // 0", "hidden // 2"))
    assert spec.nodes[0].layer.out_channels == 8  # c = 4 > 2: hidden = 16, // 2


# A property: random arithmetic trees, written with only the parentheses Python's precedence needs,
# evaluate as Python's operators evaluate the tree (the reference computes on the tree, not on text);
# a division by zero or an integer over 10**18 anywhere is an ExpressionError.
_OPERATORS = {"+": (1, operator.add), "-": (1, operator.sub), "*": (2, operator.mul),
              "//": (2, operator.floordiv), "%": (2, operator.mod)}

_trees = st.recursive(
    st.integers(-50, 50),
    lambda children: st.tuples(st.sampled_from(sorted(_OPERATORS)), children, children),
    max_leaves=12,
)


def _precedence(tree) -> int:
    return 3 if isinstance(tree, int) else _OPERATORS[tree[0]][0]


def _text(tree) -> str:
    if isinstance(tree, int):
        return f"({tree})" if tree < 0 else str(tree)
    symbol, left, right = tree
    level = _OPERATORS[symbol][0]
    left_text = _text(left) if _precedence(left) >= level else f"({_text(left)})"
    right_text = _text(right) if _precedence(right) > level else f"({_text(right)})"  # left-associative
    return f"{left_text} {symbol} {right_text}"


def _value(tree):
    if isinstance(tree, int):
        return tree
    symbol, left, right = tree
    a, b = _value(left), _value(right)
    if a is None or b is None or (symbol in ("//", "%") and b == 0):
        return None
    result = _OPERATORS[symbol][1](a, b)
    return None if abs(result) > 10**18 else result  # the evaluator's integer bound: an error


@settings(max_examples=300, deadline=None)
@given(_trees)
def test_random_arithmetic_follows_pythons_precedence(tree):
    expected = _value(tree)
    if expected is None:
        with pytest.raises(ExpressionError):
            evaluate(_text(tree), {})
    else:
        assert evaluate(_text(tree), {}) == expected
