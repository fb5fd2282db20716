"""Static analysis of block bodies: outputs (top-level bindings) and inputs (free reads)."""

from __future__ import annotations

import textwrap

import pytest

from pipelines.assembly.analysis import BlockAnalysis, analyze


def case(body: str, outputs: tuple[str, ...], inputs: tuple[str, ...], *, id: str) -> object:
    return pytest.param(textwrap.dedent(body).strip("\n"), outputs, inputs, id=id)


# Each row: body, expected outputs, expected inputs (both in source order).
CASES = [
    # -- plain assignment and evaluation order --
    case("x = 1", ("x",), (), id="assign"),
    case("x = y", ("x",), ("y",), id="assign-from-input"),
    case("x = y = z", ("x", "y"), ("z",), id="chained-assign"),
    case("(a, b), *c = d", ("a", "b", "c"), ("d",), id="unpacking"),
    case("x = x + 1", ("x",), ("x",), id="read-before-rebind"),
    case("x = 1\nx = x + y", ("x",), ("y",), id="read-after-bind"),
    case("print(t)\nt = 1", ("t",), ("t",), id="read-then-bind"),
    case("b = 1\na = 2\nb = 3", ("a", "b"), (), id="rebinding-moves-to-end"),
    case("a.b = c", (), ("c", "a"), id="attribute-target"),
    case("a[i] = v", (), ("v", "a", "i"), id="subscript-target"),
    case("x: int = 1", ("x",), (), id="annotated"),
    case("x: Foo", (), ("Foo",), id="bare-annotation-binds-nothing"),
    case("assert x, msg", (), ("x", "msg"), id="assert"),
    # -- augmented assignment --
    case("x += 1", ("x",), ("x",), id="augassign-input-and-output"),
    case("x = 0\nx += step", ("x",), ("step",), id="augassign-after-bind"),
    case("a.total += v", (), ("a", "v"), id="augassign-attribute"),
    # -- builtins and kernel-provided names --
    case("n = len(rows)\nprint(n)", ("n",), ("rows",), id="builtins-not-inputs"),
    case("display(df)\nget_ipython()", (), ("df",), id="kernel-names-not-inputs"),
    case("__name__", (), (), id="dunder-builtin"),
    # -- _private names --
    case("_tmp = load()\nresult = _tmp", ("result",), ("load",), id="private-not-output"),
    case("def _helper():\n    return cfg", (), ("cfg",), id="private-def-reads"),
    # -- imports --
    case("import os", (), (), id="import"),
    case("import os.path", (), (), id="dotted-import"),
    case("import numpy as np\nfrom a import b as c, d", (), (), id="import-as"),
    case("import pandas as pd\ndf = pd.read_csv(p)", ("df",), ("p",), id="import-used"),
    case("x = os.sep\nimport os", ("x",), ("os",), id="use-before-import"),
    # -- for / with / while --
    case("for i, j in pairs:\n    total = i", ("i", "j", "total"), ("pairs",), id="for"),
    case("for x in x:\n    pass", ("x",), ("x",), id="for-iter-read-first"),
    case("async def f():\n    async for a in s:\n        pass", ("f",), ("s",), id="async-for"),
    case("with open(p) as fh:\n    text = fh.read()", ("fh", "text"), ("p",), id="with"),
    case("with a as (b, c), d as e:\n    pass", ("b", "c", "e"), ("a", "d"), id="with-tuple"),
    case("while (line := read()):\n    n = 1", ("line", "n"), ("read",), id="while-walrus"),
    # -- except --
    case(
        "try:\n    pass\nexcept ValueError as e:\n    msg = str(e)",
        ("msg",),
        (),
        id="except-as-not-output",
    ),
    case("try:\n    pass\nexcept Missing:\n    pass", (), ("Missing",), id="except-type"),
    case("try:\n    pass\nexcept* ValueError as group:\n    pass", (), (), id="except-star"),
    # -- comprehensions --
    case("y = [x for x in data]", ("y",), ("data",), id="listcomp-target-local"),
    case("y = [x for x in x]", ("y",), ("x",), id="listcomp-first-iter-outer"),
    case("y = [a + z for a in xs for z in a]", ("y",), ("xs",), id="second-iter-inner"),
    case("y = [a for a in range(3) if keep]", ("y",), ("keep",), id="condition"),
    case("y = {k: v for k, v in items}", ("y",), ("items",), id="dictcomp"),
    case("y = {k for k in ks}", ("y",), ("ks",), id="setcomp"),
    case("g = (i for i in seq)", ("g",), ("seq",), id="genexp"),
    case("z = [[w for w in row] for row in grid]", ("z",), ("grid",), id="nested-comp"),
    case("[i for i in range(3)]\nprint(i)", (), ("i",), id="comp-target-does-not-leak"),
    case("y = [z := v for v in data]", ("z", "y"), ("data",), id="walrus-in-comp-binds-outside"),
    case("z = [[(m := w) for w in r] for r in g]", ("m", "z"), ("g",), id="walrus-nested-comp"),
    case("(x := 5)", ("x",), (), id="walrus"),
    case("if (n := len(a)) > 1:\n    pass", ("n",), ("a",), id="walrus-in-if"),
    # -- functions --
    case("def f(a):\n    return a", ("f",), (), id="params-local"),
    case("def f(a):\n    return a + b", ("f",), ("b",), id="free-read-in-def"),
    case("def f():\n    return b\nb = 1", ("f", "b"), (), id="def-reads-later-binding"),
    case("b = 1\ndef f():\n    return b", ("b", "f"), (), id="def-reads-earlier-binding"),
    case("def f():\n    v = 1\n    return v", ("f",), (), id="def-local"),
    case("def f():\n    for k in ks:\n        pass\n    return k", ("f",), ("ks",), id="def-for"),
    case("def fact(n):\n    return fact(n - 1)", ("fact",), (), id="recursion"),
    case("import os\ndef f():\n    return os.sep", ("f",), (), id="def-uses-import"),
    case(
        "def f(a=default, *args, b: Ann = 2, **kw) -> Ret:\n    return a, args, b, kw",
        ("f",),
        ("default", "Ann", "Ret"),
        id="defaults-and-annotations-outside",
    ),
    case("def f(x=(y := 1)):\n    pass", ("y", "f"), (), id="walrus-in-default"),
    case("@dec\ndef f():\n    pass", ("f",), ("dec",), id="decorator"),
    case("async def fetch():\n    await go()", ("fetch",), ("go",), id="async-def"),
    case("def f():\n    x: Foo = 1", ("f",), (), id="annotation-in-def-not-evaluated"),
    case(
        "def outer():\n    v = 1\n    def inner():\n        return v + w\n    return inner",
        ("outer",),
        ("w",),
        id="closure",
    ),
    case(
        "def outer():\n    v = 1\n    def inner():\n        nonlocal v\n        v += w",
        ("outer",),
        ("w",),
        id="nonlocal",
    ),
    case("def f():\n    return [q for q in r]", ("f",), ("r",), id="comp-in-def"),
    case("def f():\n    return [(t := i) for i in s]", ("f",), ("s",), id="walrus-in-def-comp"),
    # -- global --
    case("def f():\n    global g\n    g = 1", ("f", "g"), (), id="global-makes-output"),
    case("def f():\n    global g\n    return g", ("f",), ("g",), id="global-read"),
    case("def f():\n    global c\n    c += 1", ("f", "c"), (), id="global-augassign"),
    case(
        "def f():\n    def g():\n        global h\n        h = 1",
        ("f", "h"),
        (),
        id="global-nested",
    ),
    case("global gg\ngg = 1", ("gg",), (), id="global-at-top-level"),
    # -- lambdas --
    case("f = lambda a: a + k", ("f",), ("k",), id="lambda"),
    case("f = lambda a=d: a", ("f",), ("d",), id="lambda-default"),
    case("f = lambda: lambda: zz", ("f",), ("zz",), id="nested-lambda"),
    case("f = lambda: k\nk = 1", ("f", "k"), (), id="lambda-reads-later-binding"),
    case("lambda: [v for v in q]", (), ("q",), id="comp-in-lambda"),
    # -- classes --
    case("class K:\n    pass", ("K",), (), id="class"),
    case("class C:\n    attr = 1\n    other = attr + 1", ("C",), (), id="class-attr-in-body"),
    case(
        "class C:\n    attr = 1\n    def m(self):\n        return attr",
        ("C",),
        ("attr",),
        id="class-attr-invisible-to-method",
    ),
    case(
        "class C:\n    a = 1\n    b = [a for _ in range(3)]",
        ("C",),
        ("a",),
        id="class-attr-invisible-to-comp",
    ),
    case("class C:\n    xs = [1]\n    ys = [x for x in xs]", ("C",), (), id="class-first-iter"),
    case("class C:\n    x = y\n    y = 2", ("C",), ("y",), id="class-read-before-bind"),
    case("class C(Base, metaclass=Meta):\n    pass", ("C",), ("Base", "Meta"), id="class-bases"),
    case("@dataclass\nclass P:\n    x: int = 0", ("P",), ("dataclass",), id="class-decorator"),
    case(
        "def f(v):\n    class K:\n        v = 2\n        def m(self):\n            return v\n"
        "    return K",
        ("f",),
        (),
        id="method-sees-function-not-class",
    ),
    # -- match --
    case(
        "match cmd:\n    case [first, *rest]:\n        pass",
        ("first", "rest"),
        ("cmd",),
        id="match-sequence-star",
    ),
    case(
        "match cmd:\n    case {'k': v, **others}:\n        pass",
        ("v", "others"),
        ("cmd",),
        id="match-mapping-rest",
    ),
    case(
        "match p:\n    case Point(x=px) as pt:\n        pass",
        ("px", "pt"),
        ("p", "Point"),
        id="match-class-as",
    ),
    case(
        "match p:\n    case (a, b) if a > lim:\n        pass",
        ("a", "b"),
        ("p", "lim"),
        id="match-guard",
    ),
    case("match p:\n    case Color.RED | 2:\n        pass", (), ("p", "Color"), id="match-value"),
    case(
        "match p:\n    case [*_]:\n        pass\n    case {**_rest}:\n        pass",
        (),
        ("p",),
        id="match-wildcards",
    ),
    # -- del --
    case("x = 1\ndel x", (), (), id="del-removes-output"),
    case("del y", (), ("y",), id="del-unbound-is-input"),
    case("x = 1\ndel x, y", (), ("y",), id="del-several"),
    case("for x in r:\n    pass\ndel x", (), ("r",), id="del-loop-var"),
    case("x = 1\ndel x\nprint(x)", (), ("x",), id="read-after-del"),
    case("del a.b, c[i]", (), ("a", "c", "i"), id="del-attribute-subscript"),
    case("def f():\n    x = 1\n    del x", ("f",), (), id="del-in-def"),
    # -- misc --
    case("", (), (), id="empty"),
    case("# just a comment", (), (), id="comment"),
    case("raise Err from cause", (), ("Err", "cause"), id="raise"),
]


@pytest.mark.parametrize(("body", "outputs", "inputs"), CASES)
def test_outputs_and_inputs(body: str, outputs: tuple[str, ...], inputs: tuple[str, ...]) -> None:
    result = analyze(body)
    assert (result.outputs, result.inputs) == (outputs, inputs)


# ---- @test functions and star imports --------------------------------------------------------

TEST_FUNCTIONS = [
    pytest.param(
        "df = load()\n@test\ndef has_rows(df):\n    assert len(df)",
        BlockAnalysis(outputs=("df",), inputs=("load",), tests=("has_rows",)),
        id="test-not-output",
    ),
    pytest.param(
        "@test()\ndef t():\n    pass\n@test\nasync def u():\n    pass",
        BlockAnalysis(outputs=(), inputs=(), tests=("t", "u")),
        id="called-decorator-and-async",
    ),
    pytest.param(
        "@test\ndef t():\n    return threshold",
        BlockAnalysis(outputs=(), inputs=("threshold",), tests=("t",)),
        id="test-reads-input",
    ),
    pytest.param(
        "def outer():\n    @test\n    def inner():\n        pass",
        BlockAnalysis(outputs=("outer",), inputs=(), tests=()),
        id="nested-test-ignored",
    ),
    pytest.param(
        "@test\nclass T:\n    pass",
        BlockAnalysis(outputs=("T",), inputs=(), tests=()),
        id="class-is-not-a-test",
    ),
]


@pytest.mark.parametrize(("body", "expected"), TEST_FUNCTIONS)
def test_test_functions(body: str, expected: BlockAnalysis) -> None:
    assert analyze(body) == expected


@pytest.mark.parametrize(
    ("body", "star_imports", "outputs"),
    [
        pytest.param("from os import *", ("os",), (), id="star"),
        pytest.param("from os.path import *\nx = 1", ("os.path",), ("x",), id="dotted"),
        pytest.param("from . import *", (".",), (), id="relative"),
        pytest.param("from ..pkg import *\nfrom a import *", ("..pkg", "a"), (), id="several"),
    ],
)
def test_star_imports(body: str, star_imports: tuple[str, ...], outputs: tuple[str, ...]) -> None:
    result = analyze(body)
    assert result.star_imports == star_imports
    assert result.outputs == outputs


# ---- IPython syntax --------------------------------------------------------------------------

IPYTHON = [
    case("%time x = f()", ("x",), ("f",), id="time-statement-binds"),
    case("x = %time f()", ("x",), ("f",), id="time-expression"),
    case("x = !ls", ("x",), (), id="shell-assign"),
    case("!pip install foo\ny = 1", ("y",), (), id="shell-line"),
    case("%matplotlib inline\ny = data", ("y",), ("data",), id="line-magic"),
    case("%load_ext autoreload\n%autoreload 2\nz = 1", ("z",), (), id="several-magics"),
    case("df?\nn = 1", ("n",), (), id="help-syntax"),
    pytest.param("  x = 1\n  y = x", ("x", "y"), (), id="leading-indent-removed"),
]


@pytest.mark.parametrize(("body", "outputs", "inputs"), IPYTHON)
def test_ipython_syntax(body: str, outputs: tuple[str, ...], inputs: tuple[str, ...]) -> None:
    result = analyze(body)
    assert (result.outputs, result.inputs) == (outputs, inputs)


# ---- syntax errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line"),
    [
        pytest.param("x = (", 1, id="unclosed"),
        pytest.param("x = 1\ny = (\nz = 2", 2, id="line-number-of-body"),
        pytest.param("def f(:\n    pass", 1, id="bad-def"),
        pytest.param("x = 1\n!ls\ny = (", 3, id="after-shell-line"),
        pytest.param("x = 1\x00", None, id="null-byte"),
    ],
)
def test_syntax_error_raises(body: str, line: int | None) -> None:
    with pytest.raises(SyntaxError) as caught:
        analyze(body)
    if line is not None:
        assert caught.value.lineno == line


def test_long_expression_chain_is_analyzed() -> None:
    """Generated code (a long sum, a long string concatenation) is valid Python."""
    terms = " + ".join(f"part_{i}" for i in range(2000))
    result = analyze(f"total = {terms}")
    assert result.outputs == ("total",)
    assert result.inputs == tuple(f"part_{i}" for i in range(2000))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("x = " + "-" * 100_000 + "1", id="parser-overflow"),
        pytest.param("f" + "(x)" * 5_000, id="deep-calls"),
        pytest.param("x = " + "lambda: " * 3_000 + "1", id="deep-lambdas"),
        pytest.param("x = " + "[" * 300 + "]" * 300, id="deep-lists"),
    ],
)
def test_deeply_nested_code_is_a_syntax_error_not_a_crash(body: str) -> None:
    """Python itself can't compile these; analysis must say so, not crash with RecursionError."""
    with pytest.raises(SyntaxError):
        analyze(body)
