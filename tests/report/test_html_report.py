"""``vlmdiag report PATH --html OUT``: one self-contained page (no external src/href) with every
claim, verdict, condition and figure, the environment and checkpoints; never written into a
checkpoint folder or over the report itself. Runs the console script's ``main`` in process."""

from __future__ import annotations

import copy
import json
import re
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from vlmdiag.cli import main

REPORT = json.loads((Path(__file__).parent / "data" / "organism_report.json").read_text())


class Page(HTMLParser):
    """Every tag's attributes, the ids, and the text of an HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.links, self.ids, self.images, self.tags, self.text = [], set(), [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.links += [(tag, name, value) for name, value in attrs.items() if name in ("src", "href", "srcset", "data")]
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs)

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture
def saved(tmp_path):
    """The organism's report with its checkpoints pointing at folders of tmp_path, and a probe section."""
    report = copy.deepcopy(REPORT)
    for role, entry in report["checkpoints"]["main"].items():
        entry["path"] = str(tmp_path / "checkpoints" / role)
        Path(entry["path"]).mkdir(parents=True)
    report["probes"] = {"name": "organism", "source": "built-in", "items": {"Mvis": 24, "Mrea": 24},
                        "content_hash": "c0ffee12"}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(report))
    return path, report


def test_the_page_is_self_contained_and_holds_every_claim_verdict_condition_and_figure(saved, tmp_path, capsys):
    path, report = saved
    out = tmp_path / "page.html"
    assert main(["report", str(path), "--html", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"html: {out}"
    html = out.read_text()
    page = Page(html)
    text = " ".join(page.text)
    for tag, name, value in page.links:  # nothing to fetch: figures inline, links within the page
        assert value.startswith("data:image/png;base64,") if name == "src" else value.startswith("#"), (tag, value)
        if name == "href":
            assert value[1:] in page.ids
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert len(page.images) == len(report["claims"])  # one figure per claim of the real run
    for claim in report["claims"]:
        assert claim["id"] in text and claim["reason"] in text
        assert f"claim-{claim['id']}--{claim['recipe']}" in page.ids
        for condition in claim["metrics"]["conditions"]:
            assert condition["name"] in text
    verdict_rows = html.split("<h2>Verdicts</h2>")[1].split("</table>")[0]
    for claim in report["claims"]:  # the verdict table: each claim with its verdict
        row = verdict_rows.split(f"#claim-{claim['id']}--")[1].split("</tr>")[0]
        assert f">{claim['verdict']}</span>" in row
    items = [re.sub(r"<[^>]+>", "", li) for li in re.findall(r"<li>(.*?)</li>", html)]
    conditions = [c for claim in report["claims"] for c in claim["metrics"]["conditions"]]
    assert len(items) == len(conditions)
    for item, c in zip(items, conditions):  # in order: mark, name, value, direction, threshold
        mark = {True: "✓", False: "✗", None: "?"}[c["holds"]]
        op = {">": "&gt;", "<": "&lt;", ">=": "≥", "<=": "≤"}[c["op"]]
        assert item.startswith(f"{mark} {escape(c['name'])}: ") and f" {op} {c['threshold']:.4g}" in item, item
    for role in report["checkpoints"]["main"].values():
        assert role["path"] in text and role["fingerprint"] in text
    for name, version in report["environment"]["versions"].items():
        assert f"versions.{name}" in text and version in text
    assert "c0ffee12" in text and "Probes" in text


def test_the_page_escapes_what_the_report_holds(saved, tmp_path):
    path, report = saved
    report["claims"] = report["claims"][:1]  # one figure is enough here
    report["claims"][0]["reason"] = '<script src="https://evil.example/x.js"></script> & more'
    path.write_text(json.dumps(report))
    out = tmp_path / "page.html"
    assert main(["report", str(path), "--html", str(out)]) == 0
    page = Page(out.read_text())
    assert "script" not in page.tags and '<script src="https://evil.example/x.js"></script> & more' in " ".join(page.text)


@pytest.mark.parametrize("where", ["a checkpoint the report names", "a model folder", "the report itself",
                                   "a folder"])
def test_the_page_never_lands_in_a_checkpoint_nor_over_the_report(saved, tmp_path, capsys, where):
    path, report = saved
    model = tmp_path / "other-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    out = {"a checkpoint the report names": Path(report["checkpoints"]["main"]["rl"]["path"]) / "page.html",
           "a model folder": model / "sub" / ".." / "page.html",
           "the report itself": path, "a folder": tmp_path}[where]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(["report", str(path), "--html", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("vlmdiag: error: ") and "--html" in error and error.count("\n") == 1, error
    if where != "a folder":
        assert "checkpoint" in error or "replace the report" in error
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing written


def test_report_without_html_is_unchanged_and_md_and_html_go_together(saved, tmp_path, capsys, monkeypatch):
    path, report = saved
    report["claims"] = report["claims"][:2]
    path.write_text(json.dumps(report))
    monkeypatch.setenv("COLUMNS", "160")
    assert main(["report", str(path)]) == 0
    terminal = capsys.readouterr().out
    assert all(claim["id"] in terminal for claim in report["claims"]) and "<html" not in terminal
    md, page = tmp_path / "s.md", tmp_path / "p.html"
    assert main(["report", str(path), "--md", str(md), "--html", str(page)]) == 0
    assert md.read_text().startswith("## vlmdiag:") and page.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["p.html", "run.json", "s.md"]  # no leftovers


def test_the_page_shows_the_baseline_change_and_the_localized_regions_curves(saved, tmp_path):
    path, report = saved
    claim = copy.deepcopy(next(c for c in report["claims"] if c["id"] == "updates.rl_smaller_than_in"))
    claim["baseline"] = {"change": "regression", "verdict": "not_reproduced", "baseline_verdict": "reproduced"}
    claim["metrics"]["regions"].update(preset="localized", derivation={
        "swap_change_rate": [1, 0.9, 0.5, 0.1, 0, 0], "skip_error_increase": [0.6, 0, 0, 0.1, 0.4, 0.2]})
    report["claims"] = [claim]
    report["baseline"] = {"path": "/ci/last-release.json", "vlmdiag_version": "0.1.0", "created": "2026-11-30",
                          "regressions": [{"id": claim["id"], "recipe": "main"}]}
    path.write_text(json.dumps(report))
    out = tmp_path / "page.html"
    assert main(["report", str(path), "--html", str(out)]) == 0
    html = out.read_text()
    page = Page(html)
    text = " ".join(page.text)
    assert "vs baseline" in text and "▼ reproduced → not_reproduced" in text
    assert "/ci/last-release.json" in text and "1 regression" in text
    assert "Localized regions [main]" in text and len(page.images) == 2  # the claim's figure and the curves
