"""The Python-config evaluator bounds its work: hostile expressions are refused quickly with
one ConfigError naming the file and line, and real configs stay well inside the bounds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from centerpoint_deploy.config import pyconfig
from centerpoint_deploy.config.pyconfig import read_python_config
from centerpoint_deploy.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
LEAF = FIXTURES / "projects/CenterPoint/configs/t4dataset/Centerpoint/second_secfpn_4xb16_121m_j6gen2_base.py"

CASES = {
    # work without a large result
    "filtered_comprehension": ("x = [1 for i in range(10**4) for j in range(10**4) if False]\n", 1,
                               "more than 200000 steps"),
    "comprehension_over_huge_range": ("x = [1 for i in range(10**5) for j in range(10**5) if False]\n", 1,
                                      "a sequence of 100000 items"),
    "linear_compare_in_loop": ("a = list(range(10**4))\nx = [i in a for i in a]\n", 2, "more than 200000 steps"),
    "str_of_big_value_in_loop": ("a = [[0]*1000]*150\nx = [str(a) for i in range(100)]\n", 2, "allowed: at most"),
    "extend_self_repeatedly": ("x = [1]\n" + "x.extend(x)\n" * 40, None, "more than"),
    # sizes
    "shared_matrix": ("a = [[0]*10**4]*10**4\nmodel = dict(a=a)\n", 1, "more than 1000000 elements"),
    "nested_literals": ("a = [0]*1000\nb = [a]*10\nc = [b, b, b, b, b, b, b, b, b, b]\nd = [c]*10\n", 4,
                        "more than 1000000 elements"),
    "doubling_list": ("a = [1]\n" + "a = a + a\n" * 40, 15, "a sequence of 16384 items; allowed: at most 10000"),
    "long_range": ("x = range(10**9)\n", 1, "a sequence of 1000000000 items"),
    "doubling_string": ("a = 'x'\n" + "a = a + a\n" * 40, 18, "a string of 131072 characters"),
    "join_blowup": ("s = 'a' * 10**5\nx = s.join([s] * 10**4)\n", 2, "allowed: at most"),
    "replace_blowup": ("s = 'a' * 10**5\nx = s.replace('a', s)\n", 2, "allowed: at most"),
    "many_names": ("a = [[0] * 1000] * 900\n" + "".join(f"b{i} = a\n" for i in range(50)), None,
                   "top-level values together"),
    # strings and formats
    "fstring_width": ('x = f"{1:>2000000000}"\n', 1, "format width or precision of 2000000000; allowed: at most 100000"),
    "fstring_nested_width": ('w = 2000000000\nx = f"{1:>{w}}"\n', 2, "format width or precision of 2000000000"),
    "format_method_width": ('x = "{:>2000000000}".format(1)\n', 1, "format width or precision of 2000000000"),
    "percent_width": ('x = "%2000000000d" % 1\n', 1, "format width or precision of 2000000000"),
    "precision": ('x = f"{1.5:.2000000000f}"\n', 1, "format width or precision of 2000000000"),
    # integers
    "pow_chain": ("x = 10**1000\ny = x**1000\nz = y**1000\n", 2, "an integer of about 3322000 bits; allowed: at most 4096"),
    "mul_chain": ("x = 10**1000\n" + "x = x * x\n" * 10, 2, "an integer of about 6644 bits"),
    # nesting
    "list_contains_itself": ("x = []\nx.append(x)\n", 2, "nests more than 64 levels deep"),
    "dict_contains_itself": ("d = {}\nd['d'] = d\n", 2, "nests more than 64 levels deep"),
    "deep_expression": ("x = " + "[" * 100 + "]" * 100 + "\n", 1, "an expression nests more than 64 levels"),
    "unparseable_depth": ("x = " + "+".join(["1"] * 50000) + "\n", None, "nest too deeply to be parsed"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_expressions_are_refused_fast_with_file_and_line(tmp_path: Path, name: str) -> None:
    text, line, message = CASES[name]
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    start = time.process_time()  # CPU time: not inflated by other processes on a loaded machine
    with pytest.raises(ConfigError) as info:
        read_python_config(path)
    elapsed = time.process_time() - start
    assert elapsed < 1.0, f"{name} took {elapsed:.2f} s of CPU"
    text = str(info.value)
    assert str(path) in text and message in text and "allowed:" in text
    if line is not None:
        assert f"line {line}:" in text


def test_limits_hold_for_the_whole_base_chain(tmp_path: Path) -> None:
    (tmp_path / "base.py").write_text("a = [[i for i in range(9000)] for j in range(3)]\n")
    (tmp_path / "mid.py").write_text("_base_ = 'base.py'\nb = [[i for i in range(9000)] for j in range(3)]\n")
    leaf = tmp_path / "leaf.py"
    leaf.write_text("_base_ = 'mid.py'\nc = [[i for i in range(9000)] for j in range(3)]\n")
    assert len(read_python_config(tmp_path / "base.py")["a"]) == 3  # one file alone fits
    with pytest.raises(ConfigError, match=r"(mid|leaf)\.py, line 2: evaluating the config takes more than 200000 steps"):
        read_python_config(leaf)


def test_real_configs_stay_well_inside_the_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    used = []
    charge = pyconfig._Budget.charge

    def counting(self, steps):
        charge(self, steps)
        used.append(self.steps)

    monkeypatch.setattr(pyconfig._Budget, "charge", counting)
    cfg = read_python_config(LEAF)
    assert cfg["model"]["type"] == "CenterPoint"
    assert max(used) < pyconfig.MAX_STEPS / 5


def test_bounded_but_legal_values_still_evaluate(tmp_path: Path) -> None:
    path = tmp_path / "ok.py"
    path.write_text("a = [0] * 1000\nb = [a] * 100\nw = f'{3:>8}'\nn = 2 ** 64\ns = '%5d' % 7\n"
                    "shared = dict(x=a)\nmodel = dict(p=shared, q=shared)\n")
    cfg = read_python_config(path)
    assert len(cfg["b"]) == 100 and cfg["w"] == "       3" and cfg["n"] == 2 ** 64 and cfg["s"] == "    7"
