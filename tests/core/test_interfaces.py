"""The ways in besides `pytest --base --rl`: --recipe with --rl-frozen, the `vlmdiag` command
(help, --version, report at the terminal's width), and the Python API `vlmdiag.run(...)`."""

import json
import subprocess
import sys

import pytest

from vlmdiag.errors import UsageError
from vlmdiag.options import parse_recipe, parse_rl_frozen, recipes_from


def frozen_of(recipes):
    return {r.name: r.rl_frozen for r in recipes}


def test_rl_frozen_goes_to_the_base_rl_recipe_or_the_only_recipe():
    late = [parse_rl_frozen("Late=ckpt/frozen")]
    assert frozen_of(recipes_from("b", "r", None, [parse_recipe("x=b2,r2")], late)) == \
        {"main": (("Late", "ckpt/frozen"),), "x": ()}
    assert frozen_of(recipes_from(None, None, None, [parse_recipe("grpo=b,r")], late)) == \
        {"grpo": (("Late", "ckpt/frozen"),)}


def test_rl_frozen_names_its_recipe():
    runs = [parse_rl_frozen("grpo:Late=organism:rl-frozen-late"), parse_rl_frozen("ppo:mid-late=c")]
    recipes = recipes_from(None, None, None, [parse_recipe("grpo=b,r"), parse_recipe("ppo=b,r")], runs)
    assert frozen_of(recipes) == {"grpo": (("Late", "organism:rl-frozen-late"),), "ppo": (("Mid-Late", "c"),)}
    assert frozen_of(recipes_from("b", "r", None, [], [parse_rl_frozen("main:Early=c")])) == \
        {"main": (("Early", "c"),)}


@pytest.mark.parametrize("recipes, text, message", [
    (["a=b,r", "c=b,r"], "Late=x", "which recipe? name it: --rl-frozen NAME:Late=x with NAME one of a, c"),
    (["a=b,r"], "z:Late=x", "no recipe is named 'z'"),
    ([], "Late=x", "pass --base and --rl, or a --recipe"),
])
def test_an_ambiguous_or_unknown_rl_frozen_recipe_is_a_usage_error(recipes, text, message):
    with pytest.raises(UsageError, match=message.replace("?", r"\?")):
        recipes_from(None, None, None, [parse_recipe(r) for r in recipes], [parse_rl_frozen(text)])


def cli(*args, env=None):
    proc = subprocess.run([sys.executable, "-m", "vlmdiag.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def test_the_command_has_help_on_stdout_and_a_version():
    import vlmdiag

    code, out, err = cli("--help")
    assert code == 0 and not err and out.startswith("usage: vlmdiag") and "report" in out and "--version" in out
    assert cli("--version")[:2] == (0, f"vlmdiag {vlmdiag.__version__}\n")
    code, out, err = cli("frobnicate")
    assert code == 2 and "invalid choice: 'frobnicate'" in err


def test_vlmdiag_report_honours_the_terminal_width(tmp_path):
    import os

    claims = [{"id": f"updates.claim_{i}", "recipe": "a-long-recipe-name", "verdict": "not_reproduced", "gate": True,
               "reason": "r", "metrics": {"statistic": 0.5, "threshold": 1.0, "conditions": [
                   {"name": "a rather long condition name", "statistic": 0.5, "interval": None, "op": ">",
                    "threshold": 1.0, "holds": False}]}} for i in range(2)]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema_version": 2, "regions": "paper", "claims": claims}))
    widths = {}
    for width in (60, 150):
        code, out, _ = cli("report", str(path), env={**os.environ, "COLUMNS": str(width)})
        assert code == 0 and "…" not in out  # folded, never cut
        widths[width] = max(map(len, out.splitlines()))
    assert widths[60] <= 60 < widths[150] <= 150  # the condition lines fold at 60, not at 150


def test_the_python_api_returns_the_report(planted, tmp_path):
    import vlmdiag

    paths = planted("paper")
    report = vlmdiag.run(paths["base"], paths["rl"], origin=paths["origin"], claims=["updates.energy_mid"],
                         report_json=tmp_path / "r.json")
    assert report.exit_code == 0 and report.verdicts() == {("updates.energy_mid", "main"): "reproduced"}
    assert report == json.loads((tmp_path / "r.json").read_text())  # the object the JSON serialises
    assert report["claims"][0]["metrics"]["conditions"][0]["holds"] is True
    with pytest.raises(UsageError, match="/nonexistent/in: checkpoint folder does not exist"):
        vlmdiag.run("/nonexistent/in", paths["rl"])


def test_the_terminal_shows_every_condition_with_its_direction():
    """Measured on main: `attention … not_reproduced 0.00252 [0.00124, 0.00384] vs 0` read like a
    pass; the margin over Early that failed was only in the JSON."""
    from vlmdiag.report.terminal import render

    interval = {"low": 0.00124, "high": 0.00384, "level": 0.95}
    result = {"id": "attention.r2v_shift_mid_late", "recipe": "main", "verdict": "not_reproduced", "gate": False,
              "reason": "...", "metrics": {"statistic": 0.00252, "interval": interval, "threshold": 0.0, "conditions": [
                  {"name": "Mid–Late R→V mass increase RL − IN", "statistic": 0.00252, "interval": interval,
                   "op": ">", "threshold": 0.0, "holds": True},
                  {"name": "margin over Early", "statistic": -0.0004, "interval": {"low": -0.0009, "high": -0.0001,
                                                                                   "level": 0.95},
                   "op": ">", "threshold": 0.0, "holds": False}]}}
    text = render({"claims": [result], "regions": "paper"}, width=200, color=False)
    assert "0.00252 [0.00124, 0.00384] > 0" in text and " vs " not in text
    assert ("attention.r2v_shift_mid_late [main] not_reproduced (not gated): ✓ Mid–Late R→V mass increase RL − IN "
            "0.00252 [0.00124, 0.00384] > 0; ✗ margin over Early -0.0004 [-0.0009, -0.0001] > 0") in text
