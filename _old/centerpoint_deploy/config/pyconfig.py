"""Read mmengine-style Python config files without executing them.

An AWML / mmdet3d config is a Python file of top-level assignments that ``mmengine`` runs
with ``exec`` after importing ``custom_imports``. Running it would need mmengine, mmdet3d and
the user's project code, so this module evaluates the file's syntax tree instead, and only
the parts that are data: constants, lists, tuples, dicts, ``dict(...)``, names of earlier
variables, ``_base_.x`` / ``{{_base_.x}}`` references, arithmetic, comparisons, ``if``
statements, small comprehensions, f-strings and a few side-effect-free builtins and
list/dict/str methods. Nothing is imported and no user function is called.

Whatever cannot be evaluated (a call to a function defined elsewhere, an import, a loop)
becomes an :class:`Unresolved` placeholder at the smallest enclosing value, so a train
pipeline that names a Python function does not stop the model section from being read.
Callers fail only when they need an unresolved value.

``_base_`` files are read recursively, relative to the file naming them, and merged with
mmengine's rules: a child dict merges key by key into the base dict, ``_delete_=True``
replaces it, any other value replaces the base value, and two base files may not define the
same top-level name.

The work a config may cause is bounded, for the whole ``_base_`` chain together: evaluation
steps (every evaluated node, comprehension iteration and element walked by a size check:
:data:`MAX_STEPS`), the size of every value (elements plus characters, shared parts counted
each time they occur, as a merge would copy them: :data:`MAX_VALUE_SIZE`), sequence lengths,
string lengths and format widths, integer bits, and the nesting of values (a list that
contains itself) and of expressions. Passing a bound is a :class:`ConfigError` naming the
file and line: such a config is broken or hostile, not merely beyond evaluation.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import string
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from centerpoint_deploy.errors import ConfigError

#: Largest sequence a config expression may build (``range``, ``*``, ``+``, comprehensions).
MAX_SEQUENCE = 10_000
#: Evaluation steps for one config and its ``_base_`` chain (real AWML configs take ~10^4).
MAX_STEPS = 200_000
#: Size of one value: container elements plus string characters, shared parts counted in full.
MAX_VALUE_SIZE = 1_000_000
#: Longest string, and largest format width or precision.
MAX_STRING = 100_000
#: Largest integer, in bits (about 1,200 decimal digits).
MAX_INT_BITS = 4096
#: Deepest nesting of a value (lists in dicts in lists ...) and of an expression.
MAX_DEPTH = 64

_BASE_REFERENCE = re.compile(r"\{\{\s*(_base_(?:\.\w+)+)\s*\}\}")
_DELETE_KEY = "_delete_"


class Unresolved:
    """A config value that cannot be evaluated without running Python code.

    Attributes:
        reason: why, with the file and line it came from.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<unresolved: {self.reason}>"


class _NotEvaluable(Exception):
    """Raised inside the evaluator; caught at the nearest container element or assignment."""


class _LimitExceeded(Exception):
    """A bound on the evaluator's work was passed; becomes a ConfigError with the file and line.

    Attributes:
        what: what was received (e.g. "a string of 2000000000 characters").
        allowed: the bound.
    """

    def __init__(self, what: str, allowed: str) -> None:
        super().__init__(what)
        self.what = what
        self.allowed = allowed


class _Budget:
    """Evaluation steps and value sizes of one config and its ``_base_`` chain.

    ``measure`` walks a value once and remembers its size and height by identity until a
    mutation (``forget``), so checking a value built from checked parts costs only its own
    new elements.
    """

    def __init__(self) -> None:
        self.steps = 0
        self._known: dict[int, tuple[Any, int, int]] = {}

    def charge(self, steps: int) -> None:
        self.steps += steps
        if self.steps > MAX_STEPS:
            raise _LimitExceeded(f"evaluating the config takes more than {MAX_STEPS} steps (a comprehension "
                                 "over a huge range, or values built up again and again?)",
                                 f"at most {MAX_STEPS} evaluation steps")

    def forget(self) -> None:
        """A list or dict was changed in place: sizes known so far may be stale."""
        self._known.clear()

    def measure(self, value: Any) -> int:
        """The size of ``value``; raises :class:`_LimitExceeded` past any bound."""
        return self._measure(value, 0)[0]

    def _measure(self, value: Any, depth: int) -> tuple[int, int]:
        """``(size, height)`` of ``value`` found ``depth`` levels down."""
        if depth > MAX_DEPTH:
            raise _LimitExceeded(f"a value nests more than {MAX_DEPTH} levels deep (a list or dict that contains "
                                 "itself?)", f"at most {MAX_DEPTH} levels of nesting")
        if isinstance(value, str):
            _check_string_length(len(value))
            return 1 + len(value), 0
        if isinstance(value, int) and not isinstance(value, bool):
            _check_int_bits(value.bit_length())
            return 1, 0
        if not isinstance(value, (list, tuple, dict, set, frozenset)):
            return 1, 0
        known = self._known.get(id(value))
        if known is not None and known[0] is value:
            self.charge(1)
            if depth + known[2] > MAX_DEPTH:
                raise _LimitExceeded(f"a value nests more than {MAX_DEPTH} levels deep",
                                     f"at most {MAX_DEPTH} levels of nesting")
            return known[1], known[2]
        items = [x for kv in value.items() for x in kv] if isinstance(value, dict) else value
        size, height = 1, 0
        for item in items:
            n, h = self._measure(item, depth + 1)
            size += n
            height = max(height, h + 1)
            if size > MAX_VALUE_SIZE:
                raise _LimitExceeded(f"a value holds more than {MAX_VALUE_SIZE} elements and characters (shared "
                                     "parts counted each time they occur)", f"at most {MAX_VALUE_SIZE}")
        self.charge(len(items) + 1)
        self._known[id(value)] = (value, size, height)
        return size, height


def read_python_config(path: str | Path) -> dict[str, Any]:
    """Evaluate a Python config file and its ``_base_`` chain into one merged dict.

    Args:
        path: the leaf config file.

    Returns:
        ``{top-level name: value}`` after merging the bases; values that could not be
        evaluated are :class:`Unresolved` (possibly nested inside lists and dicts).

    Raises:
        ConfigError: the file or a base file is missing, unreadable, not valid Python, its
            ``_base_`` is not a string or a list of strings, the bases form a cycle, or two
            bases define the same name.
    """
    return _read_file(Path(path).resolve(), (), _Budget())


def contains_unresolved(value: Any) -> Unresolved | None:
    """The first :class:`Unresolved` inside ``value`` (searching lists, tuples and dicts), or None."""
    if isinstance(value, Unresolved):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple, set)):
        for item in value:
            found = contains_unresolved(item)
            if found is not None:
                return found
    return None


def merge_config(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """mmengine's merge: ``child`` over ``base``, recursively for dicts; inputs are not changed."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and not value.get(_DELETE_KEY, False) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = _strip_delete_keys(value)
    return _strip_delete_keys(merged)


def _strip_delete_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_delete_keys(v) for k, v in value.items() if k != _DELETE_KEY}
    if isinstance(value, list):
        return [_strip_delete_keys(v) for v in value]
    return value


def _read_file(path: Path, chain: tuple[Path, ...], budget: _Budget) -> dict[str, Any]:
    where = f" (a _base_ of {chain[-1]})" if chain else ""
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"config _base_ files form a cycle: {cycle}")
    if not path.is_file():
        raise ConfigError(f"config file {path}{where} does not exist")
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(_BASE_REFERENCE.sub(r"\1", source), filename=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}{where}: {exc}") from exc
    except SyntaxError as exc:
        raise ConfigError(f"config file {path}{where} is not valid Python: line {exc.lineno}: {exc.msg}") from exc
    except (RecursionError, MemoryError) as exc:
        raise ConfigError(f"config file {path}{where}: its expressions nest too deeply to be parsed; "
                          f"allowed: at most {MAX_DEPTH} levels") from exc

    base: dict[str, Any] = {}
    base_owner: dict[str, Path] = {}
    for base_path in _base_paths(tree, path):
        for key, value in _read_file(base_path, (*chain, path), budget).items():
            if key in base:
                raise ConfigError(f"config base files {base_owner[key]} and {base_path} both define '{key}'; "
                                  "mmengine does not allow duplicate keys among _base_ files")
            base[key] = value
            base_owner[key] = base_path
    evaluator = _Evaluator(path, base, budget)
    own = evaluator.run_file(tree.body)
    evaluator.check_total(own)  # with the bases under '_base_': bounds what the merge copies
    own.pop("_base_", None)
    return merge_config(base, own)


def _base_paths(tree: ast.Module, path: Path) -> list[Path]:
    """The ``_base_`` files named by a top-level ``_base_ = "x.py"`` or ``["a.py", "b.py"]``."""
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_" for t in stmt.targets):
            try:
                value = ast.literal_eval(stmt.value)
            except ValueError:
                value = None
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                raise ConfigError(f"{path}:{stmt.lineno}: _base_ must be a file name or a list of file names")
            return [(path.parent / n).resolve() for n in names]
    return []


def _check_size(n: int) -> None:
    if n > MAX_SEQUENCE:
        raise _LimitExceeded(f"a sequence of {n} items", f"at most {MAX_SEQUENCE} items")


def _check_string_length(n: int) -> None:
    if n > MAX_STRING:
        raise _LimitExceeded(f"a string of {n} characters", f"at most {MAX_STRING} characters")


def _check_int_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise _LimitExceeded(f"an integer of about {bits} bits", f"at most {MAX_INT_BITS} bits "
                             f"(about {int(MAX_INT_BITS * math.log10(2))} decimal digits)")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _safe_add(a: Any, b: Any) -> Any:
    if isinstance(a, str) and isinstance(b, str):
        _check_string_length(len(a) + len(b))
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        _check_size(len(a) + len(b))
    return operator.add(a, b)


def _safe_mul(a: Any, b: Any) -> Any:
    if _is_int(a) and _is_int(b):
        _check_int_bits(a.bit_length() + b.bit_length())
    for seq, count in ((a, b), (b, a)):
        if isinstance(seq, (str, list, tuple)) and _is_int(count):
            (_check_string_length if isinstance(seq, str) else _check_size)(len(seq) * max(count, 0))
    return operator.mul(a, b)


def _safe_pow(a: Any, b: Any) -> Any:
    if isinstance(b, (int, float)) and abs(b) > 1000:
        raise _NotEvaluable(f"exponent {b} is too large")
    if _is_int(a) and _is_int(b) and b > 0:
        _check_int_bits(max(a.bit_length(), 1) * b)
    return operator.pow(a, b)


_PERCENT_FIELD = re.compile(r"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _safe_mod(a: Any, b: Any) -> Any:
    if isinstance(a, str):  # printf-style formatting: bound the widths before formatting
        for match in _PERCENT_FIELD.finditer(a):
            for number in match.groups():
                if number == "*":
                    raise _NotEvaluable("'%*d'-style widths taken from arguments are not evaluated")
                if number is not None:
                    _check_format_number(number)
    return operator.mod(a, b)


def _check_format_number(digits: str) -> None:
    if len(digits) > len(str(MAX_STRING)) or int(digits) > MAX_STRING:
        raise _LimitExceeded(f"a format width or precision of {digits[:20]}{'...' if len(digits) > 20 else ''}",
                             f"at most {MAX_STRING}")


def _check_format_spec(spec: str) -> None:
    """Bound every width and precision in a ``format()`` spec (e.g. ``>2000000000``)."""
    for digits in re.findall(r"\d+", spec):
        _check_format_number(digits)


def _check_format_template(template: str) -> None:
    """Bound the specs of a ``str.format`` template; nested replacement fields in specs are not evaluated."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise _NotEvaluable(f"malformed format string: {exc}") from exc
    for _, _, spec, _ in fields:
        if spec:
            if "{" in spec:
                raise _NotEvaluable("format specs with nested replacement fields are not evaluated")
            _check_format_spec(spec)


def _safe_format(value: Any, spec: str) -> str:
    _check_format_spec(spec)
    return format(value, spec)


def _safe_range(*args: int) -> list[int]:
    r = range(*args)
    _check_size(len(r))
    return list(r)


def _safe_sum(items: Any, start: Any = 0) -> Any:
    values = list(items)
    if not all(isinstance(v, (int, float)) for v in (*values, start)):
        raise _NotEvaluable("sum() of values that are not numbers is not evaluated")
    return sum(values, start)


def _check_str_method(text: str, name: str, args: list[Any]) -> None:
    """Bound what a str method can build before it runs."""
    if name == "format":
        _check_format_template(text)
    elif name == "join" and args and isinstance(args[0], (list, tuple, set, dict, str)):
        parts = list(args[0])
        _check_string_length(len(text) * max(len(parts) - 1, 0)
                             + sum(len(p) if isinstance(p, str) else 0 for p in parts))
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = text.count(args[0]) if args[0] else len(text) + 1
        _check_string_length(len(text) + count * max(len(args[1]) - len(args[0]), 0))


_BINARY_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: _safe_add, ast.Sub: operator.sub, ast.Mult: _safe_mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: _safe_mod, ast.Pow: _safe_pow,
}
_UNARY_OPS: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
}
_COMPARE_OPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
#: Builtins a config may call. ``dict``, ``list`` and ``tuple`` keep unresolved elements.
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "dict": dict, "list": list, "tuple": tuple, "set": set, "len": len, "sum": _safe_sum, "min": min,
    "max": max, "abs": abs, "round": round, "int": int, "float": float, "str": str, "bool": bool,
    "range": _safe_range, "sorted": sorted, "zip": lambda *a: list(zip(*a)),
    "enumerate": lambda *a: list(enumerate(*a)), "reversed": lambda a: list(reversed(a)),
}
_CONTAINER_FUNCTIONS = {"dict", "list", "tuple"}
_NAMED_CONSTANTS = {"inf": math.inf, "pi": math.pi}
#: Methods a config may call on plain values (mutating list/dict methods included).
#: Methods that change their receiver in place (sizes measured before are then stale).
_MUTATING = frozenset({"append", "extend", "insert", "pop", "update", "setdefault"})
_METHODS: dict[type, frozenset[str]] = {
    list: frozenset({"append", "extend", "insert", "copy", "index", "count", "pop"}),
    dict: frozenset({"update", "get", "copy", "keys", "values", "items", "pop", "setdefault"}),
    str: frozenset({"format", "join", "replace", "upper", "lower", "split", "strip", "startswith", "endswith"}),
    tuple: frozenset({"index", "count"}),
}


class _Evaluator:
    """Evaluates the top-level statements of one config file into a namespace."""

    def __init__(self, path: Path, base: dict[str, Any], budget: _Budget) -> None:
        self.path = path
        self.names: dict[str, Any] = {"_base_": base}
        self.scopes: list[dict[str, Any]] = []  # comprehension variables, innermost last
        self.line = 0
        self.budget = budget
        self.depth = 0  # of the expression being evaluated

    # ----- statements -----------------------------------------------------------------
    def run_file(self, body: list[ast.stmt]) -> dict[str, Any]:
        """Evaluate a file's statements; a passed bound is a ConfigError with the file and line."""
        try:
            return self.run(body)
        except _LimitExceeded as exc:
            raise self._limit_error(exc) from None

    def check_total(self, value: Any) -> None:
        """Bound the size of the merged namespace (what the merge and the readers walk)."""
        try:
            self.budget.measure(value)
        except _LimitExceeded as exc:
            raise ConfigError(f"config file {self.path}: its top-level values together (with its _base_ files): "
                              f"{exc.what}; allowed: {exc.allowed}") from None

    def _limit_error(self, exc: _LimitExceeded) -> ConfigError:
        return ConfigError(f"config file {self.path}, line {self.line}: {exc.what}; allowed: {exc.allowed}")

    def run(self, body: list[ast.stmt]) -> dict[str, Any]:
        for stmt in body:
            self.line = stmt.lineno
            self.budget.charge(1)
            self._statement(stmt)
        return self.names

    def _statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assign):
            value = self._try(stmt.value)
            for target in stmt.targets:
                self._assign(target, value)
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            self._assign(stmt.target, self._try(stmt.value))
        elif isinstance(stmt, ast.AugAssign):
            self._aug_assign(stmt)
        elif isinstance(stmt, ast.If):
            test = self._try(stmt.test)
            if isinstance(test, Unresolved):
                self._invalidate(stmt, f"is set under an 'if' whose condition cannot be evaluated ({test.reason})")
            else:
                self.run(stmt.body if test else stmt.orelse)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                name = (alias.asname or alias.name).split(".")[0]
                self.names[name] = self._unresolved(f"'{name}' is imported, and imports are not run")
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.names[stmt.name] = self._unresolved(f"'{stmt.name}' is defined by code, which is not run")
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            return  # a docstring
        elif isinstance(stmt, ast.Expr):
            if isinstance(self._try(stmt.value), Unresolved):
                self._invalidate(stmt, "may be changed by an expression that cannot be evaluated")
        elif isinstance(stmt, ast.Pass):
            return
        else:
            self._invalidate(stmt, f"may be changed by a '{type(stmt).__name__}' statement, which is not run")

    def _assign(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name) and target.id == "_base_":
            return  # the file list, already read by _base_paths; the name stays bound to the bases
        if isinstance(target, ast.Name):
            self.names[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            if isinstance(value, (list, tuple)) and len(value) == len(target.elts):
                for t, v in zip(target.elts, value):
                    self._assign(t, v)
            else:
                reason = value.reason if isinstance(value, Unresolved) else "cannot unpack the value"
                for t in target.elts:
                    self._assign(t, self._unresolved(reason))
        elif isinstance(target, (ast.Subscript, ast.Attribute)):
            try:
                if isinstance(value, Unresolved):
                    raise _NotEvaluable(value.reason)
                self._store_item(target, value)
            except _NotEvaluable as exc:
                self._invalidate(target, str(exc))
        else:
            self._invalidate(target, f"unsupported assignment target {type(target).__name__}")

    def _aug_assign(self, stmt: ast.AugAssign) -> None:
        op = _BINARY_OPS.get(type(stmt.op))
        try:
            if op is None:
                raise _NotEvaluable(f"operator {type(stmt.op).__name__} is not supported")
            current = self._eval(stmt.target)
            result = self._apply(op, current, self._eval(stmt.value))
        except _NotEvaluable as exc:
            result = self._unresolved(str(exc))
        self._assign(stmt.target, result)

    def _store_item(self, target: ast.Subscript | ast.Attribute, value: Any) -> None:
        container = self._eval(target.value)
        key = target.attr if isinstance(target, ast.Attribute) else self._eval(target.slice)
        if not isinstance(container, (dict, list)):
            raise _NotEvaluable(f"cannot assign into a {type(container).__name__}")
        try:
            container[key] = value
        except (TypeError, IndexError) as exc:
            raise _NotEvaluable(f"cannot assign item {key!r}: {exc}") from exc
        self.budget.forget()
        self.budget.measure(container)

    def _invalidate(self, node: ast.AST, reason: str) -> None:
        """Mark every variable that a statement which is not run could change as unresolved."""
        for name in _changed_names(node):
            if name != "_base_":
                self.names[name] = self._unresolved(reason)

    # ----- expressions ----------------------------------------------------------------
    def _unresolved(self, reason: str) -> Unresolved:
        return Unresolved(f"{self.path.name}:{self.line}: {reason}")

    def _try(self, node: ast.expr) -> Any:
        """Evaluate, turning failure into an :class:`Unresolved` value."""
        try:
            return self._eval(node)
        except _NotEvaluable as exc:
            return self._unresolved(str(exc))
        except RecursionError:
            return self._unresolved("expression nests too deeply")

    def _eval(self, node: ast.expr) -> Any:
        method = getattr(self, f"_eval_{type(node).__name__}", None)
        if method is None:
            raise _NotEvaluable(f"{type(node).__name__} expressions are not evaluated")
        self.budget.charge(1)
        if self.depth >= MAX_DEPTH:
            raise _LimitExceeded(f"an expression nests more than {MAX_DEPTH} levels deep",
                                 f"at most {MAX_DEPTH} levels of nesting")
        self.depth += 1
        try:
            value = method(node)
        finally:
            self.depth -= 1
        self.budget.measure(value)
        return value

    def _apply(self, fn: Callable[..., Any], *args: Any) -> Any:
        for a in args:
            if isinstance(a, Unresolved):
                raise _NotEvaluable(a.reason)
        try:
            return fn(*args)
        except (_NotEvaluable, _LimitExceeded):
            raise
        except Exception as exc:  # an error of the config's own expression, e.g. 1 / 0
            raise _NotEvaluable(f"{type(exc).__name__}: {exc}") from exc

    def _eval_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def _eval_Name(self, node: ast.Name) -> Any:
        for scope in reversed(self.scopes):
            if node.id in scope:
                return scope[node.id]
        if node.id in self.names:
            value = self.names[node.id]
            if isinstance(value, Unresolved):
                raise _NotEvaluable(value.reason)
            return value
        if node.id in _NAMED_CONSTANTS:
            return _NAMED_CONSTANTS[node.id]
        raise _NotEvaluable(f"name '{node.id}' is not defined in this file")

    def _is_defined(self, name: str) -> bool:
        return name in self.names or any(name in scope for scope in self.scopes)

    def _elements(self, nodes: list[ast.expr]) -> list[Any]:
        out: list[Any] = []
        for n in nodes:
            if isinstance(n, ast.Starred):
                out.extend(self._apply(list, self._eval(n.value)))
            else:
                out.append(self._try(n))
        return out

    def _eval_List(self, node: ast.List) -> list[Any]:
        return self._elements(node.elts)

    def _eval_Tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple(self._elements(node.elts))

    def _eval_Set(self, node: ast.Set) -> set[Any]:
        return self._apply(set, [self._eval(e) for e in node.elts])

    def _eval_Dict(self, node: ast.Dict) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values):
            if key is None:  # {**other}
                out.update(self._apply(dict, self._eval(value)))
            else:
                out[self._hashable(self._eval(key))] = self._try(value)
        return out

    def _hashable(self, key: Any) -> Any:
        try:
            hash(key)
        except TypeError as exc:
            raise _NotEvaluable(f"unhashable key {key!r}") from exc
        return key

    def _eval_Attribute(self, node: ast.Attribute) -> Any:
        obj = self._eval(node.value)
        if isinstance(obj, dict):  # ``_base_.model`` and mmengine's attribute access to dict keys
            if node.attr not in obj:
                raise _NotEvaluable(f"'{node.attr}' is not defined in {ast.unparse(node.value)}")
            value = obj[node.attr]
            if isinstance(value, Unresolved):
                raise _NotEvaluable(value.reason)
            return value
        raise _NotEvaluable(f"attribute '{node.attr}' of a {type(obj).__name__} is not evaluated")

    def _eval_Subscript(self, node: ast.Subscript) -> Any:
        value = self._apply(operator.getitem, self._eval(node.value), self._eval(node.slice))
        if isinstance(value, Unresolved):
            raise _NotEvaluable(value.reason)
        return value

    def _eval_Slice(self, node: ast.Slice) -> slice:
        parts = [None if p is None else self._eval(p) for p in (node.lower, node.upper, node.step)]
        return slice(*parts)

    def _eval_BinOp(self, node: ast.BinOp) -> Any:
        op = _BINARY_OPS.get(type(node.op))
        if op is None:
            raise _NotEvaluable(f"operator {type(node.op).__name__} is not evaluated")
        return self._apply(op, self._eval(node.left), self._eval(node.right))

    def _eval_UnaryOp(self, node: ast.UnaryOp) -> Any:
        op = _UNARY_OPS.get(type(node.op))
        if op is None:
            raise _NotEvaluable(f"operator {type(node.op).__name__} is not evaluated")
        return self._apply(op, self._eval(node.operand))

    def _eval_BoolOp(self, node: ast.BoolOp) -> Any:
        is_and = isinstance(node.op, ast.And)
        value: Any = None
        for operand in node.values:
            value = self._eval(operand)
            if bool(value) != is_and:
                return value
        return value

    def _eval_Compare(self, node: ast.Compare) -> bool:
        left = self._eval(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = self._eval(right_node)
            self.budget.charge(self._work(left) + self._work(right))  # ==, in: linear in the operands
            if not self._apply(_COMPARE_OPS[type(op)], left, right):
                return False
            left = right
        return True

    def _eval_IfExp(self, node: ast.IfExp) -> Any:
        return self._eval(node.body if self._eval(node.test) else node.orelse)

    def _eval_JoinedStr(self, node: ast.JoinedStr) -> str:
        parts = []
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                v = self._eval(value.value)
                self.budget.charge(self._work(v))  # str / repr walk the whole value
                v = {-1: v, ord("r"): repr(v), ord("s"): str(v), ord("a"): ascii(v)}[value.conversion]
                spec = self._eval(value.format_spec) if value.format_spec is not None else ""
                parts.append(self._apply(_safe_format, v, spec))
            else:
                parts.append(self._eval(value))
        return "".join(parts)

    def _eval_Call(self, node: ast.Call) -> Any:
        if isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not self._is_defined(node.func.id):
            return self._call_builtin(node.func.id, node)
        if isinstance(node.func, ast.Attribute):
            obj = self._eval(node.func.value)
            allowed = _METHODS.get(type(obj), frozenset())
            if node.func.attr in allowed:
                args, kwargs = self._call_args(node, keep_unresolved=True)
                return self._call_method(obj, node.func.attr, args, kwargs)
        raise _NotEvaluable(f"call to '{ast.unparse(node.func)}' is not evaluated")

    def _call_method(self, obj: Any, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        self.budget.charge(sum(self._work(a) for a in (obj, *args, *kwargs.values())))
        if isinstance(obj, str):
            _check_str_method(obj, name, args)
        result = self._apply(lambda: getattr(obj, name)(*args, **kwargs))
        if name in _MUTATING and isinstance(obj, (list, dict)):
            self.budget.forget()
            self.budget.measure(obj)  # x.append(x), x.extend(x) ...
        return result

    def _call_builtin(self, name: str, node: ast.Call) -> Any:
        keep = name in _CONTAINER_FUNCTIONS
        args, kwargs = self._call_args(node, keep_unresolved=keep)
        self.budget.charge(sum(self._work(a) for a in (*args, *kwargs.values())))  # builtins walk their args
        if not keep:
            for a in (*args, *kwargs.values()):
                found = contains_unresolved(a)
                if found is not None:
                    raise _NotEvaluable(found.reason)
        return self._apply(lambda: _FUNCTIONS[name](*args, **kwargs))

    def _work(self, value: Any) -> int:
        """Steps to walk ``value`` once (its size; 0 for scalars)."""
        if isinstance(value, (str, list, tuple, dict, set, frozenset)):
            return self.budget.measure(value)
        return 0

    def _call_args(self, node: ast.Call, keep_unresolved: bool) -> tuple[list[Any], dict[str, Any]]:
        evaluate = self._try if keep_unresolved else self._eval
        args: list[Any] = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                args.extend(self._apply(list, self._eval(a.value)))
            else:
                args.append(evaluate(a))
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:  # f(**mapping)
                kwargs.update(self._apply(dict, self._eval(kw.value)))
            else:
                kwargs[kw.arg] = evaluate(kw.value)
        return args, kwargs

    # comprehensions ------------------------------------------------------------------
    def _eval_ListComp(self, node: ast.ListComp) -> list[Any]:
        return [self._eval(node.elt) for _ in self._iterate(node.generators)]

    def _eval_GeneratorExp(self, node: ast.GeneratorExp) -> list[Any]:
        return self._eval_ListComp(node)  # type: ignore[arg-type]

    def _eval_SetComp(self, node: ast.SetComp) -> set[Any]:
        return self._apply(set, [self._eval(node.elt) for _ in self._iterate(node.generators)])

    def _eval_DictComp(self, node: ast.DictComp) -> dict[Any, Any]:
        return {self._hashable(self._eval(node.key)): self._eval(node.value) for _ in self._iterate(node.generators)}

    def _iterate(self, generators: list[ast.comprehension]) -> Iterator[None]:
        """Yield once per combination of the comprehension's loop variables (bound in a scope)."""
        self.scopes.append({})
        try:
            yield from self._loop(generators, 0, [0])
        finally:
            self.scopes.pop()

    def _loop(self, generators: list[ast.comprehension], i: int, count: list[int]) -> Iterator[None]:
        if i == len(generators):
            count[0] += 1
            _check_size(count[0])
            yield None
            return
        gen = generators[i]
        if gen.is_async:
            raise _NotEvaluable("async comprehensions are not evaluated")
        iterable = self._eval(gen.iter)
        if not isinstance(iterable, (list, tuple, dict, str, set)):
            raise _NotEvaluable(f"cannot iterate over a {type(iterable).__name__}")
        for item in iterable:
            self.budget.charge(1)
            self._bind(gen.target, item)
            if all(self._eval(cond) for cond in gen.ifs):
                yield from self._loop(generators, i + 1, count)

    def _bind(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.scopes[-1][target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (list, tuple)) and len(value) == len(target.elts):
            for t, v in zip(target.elts, value):
                self._bind(t, v)
        else:
            raise _NotEvaluable(f"cannot bind a comprehension variable to {ast.unparse(target)}")


def _root_name(node: ast.expr) -> str | None:
    """``model`` for ``model["a"].b[0]``; None when the chain does not start at a name."""
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _changed_names(node: ast.AST) -> set[str]:
    """Names a statement may rebind or mutate: assignment targets (or their roots) and the
    receivers of method calls."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            names.add(sub.id)
        elif isinstance(sub, (ast.Subscript, ast.Attribute)) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            names.add(_root_name(sub) or "")
        elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute):
            names.add(_root_name(sub.func.value) or "")
    names.discard("")
    return names
