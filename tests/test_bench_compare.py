"""bench/compare.py's bigtree and startup cases, run at a tiny scale so they cannot rot.

Nothing here looks at a time: only that every contender ran, produced what it
should, and that every target row has a value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"


def run_compare(tmp_path: Path, *args: str) -> dict:  # type: ignore[type-arg]
    out = tmp_path / "results.json"
    cp = subprocess.run(
        [sys.executable, str(BENCH / "compare.py"), "--smoke", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cp.returncode == 0, cp.stderr[-3000:]
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_bigtree_layout(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import bigtree
    finally:
        sys.path.remove(str(BENCH))
    rels = bigtree.layout(10_000)
    assert len(rels) == len(set(rels)) == 10_000
    assert rels[0] == ""
    seen = {""}
    for rel in rels[1:]:  # parents come first
        assert rel.rpartition("/")[0] in seen
        seen.add(rel)
    files, dirs, nbytes = bigtree.make_tree(tmp_path / "t", files=57, dirs=9)
    found = [(root, names) for root, _, names in os.walk(tmp_path / "t")]
    assert (files, dirs) == (57, 9)
    assert len(found) == 9
    assert sum(len(names) for _, names in found) == 57
    assert nbytes == sum(bigtree.file_size(i) for i in range(57))
    assert nbytes == sum(p.stat().st_size for p in (tmp_path / "t").rglob("*") if p.is_file())


def test_bigtree_case_runs(tmp_path: Path) -> None:
    res = run_compare(tmp_path, "--only", "bigtree", "--big-files", "300", "--big-dirs", "30")
    big = res["bigtree"]
    fss = ["tmpfs", "xfs"]
    if "skipped" in big["xfs"]:
        assert (
            os.geteuid() != 0 or "loop" in big["xfs"]["skipped"] or "mkfs" in big["xfs"]["skipped"]
        )
        fss = ["tmpfs"]
    for fs in fss:
        node = big[fs]
        assert node["tree"] == {"files": 300, "dirs": 30, "bytes": node["tree"]["bytes"]}
        for name, d in node["place"].items():
            assert "error" not in d, (fs, name, d)
            assert len(d["samples"]) == 1
            assert d["info"]["result"]["files"] == 300, (fs, name)
        for name, d in node["remove"].items():
            assert "error" not in d, (fs, name, d)
            assert d["info"]["left_behind"] is False, (fs, name)
        if os.access("/usr/bin/time", os.X_OK):
            rss = node["place"]["linkstrategy place --strategy hardlink"]["peak_rss_max_mib"]
            assert 1 < rss < 1024  # the CLI's own, not the benchmark's parent's
            assert node["place"]["cp -al"]["peak_rss_max_mib"] < rss
    rows = [r for r in res["ratios"] if r["case"] == "bigtree"]
    assert len(rows) == 4 * len(fss)
    assert all(r["value"] is not None and r["met"] in (True, False) for r in rows)


def test_startup_case_runs(tmp_path: Path) -> None:
    res = run_compare(tmp_path, "--only", "startup")
    st = res["startup"]
    assert set(st["commands"]) == {
        "python -c pass",
        "linkstrategy --version",
        "linkstrategy probe PATH",
        'python -c "import linkstrategy, linkstrategy._place"',
    }
    for name, d in st["commands"].items():
        assert "error" not in d, (name, d)
        assert len(d["samples"]) == 3
    imp = st["importtime"]['python -c "import linkstrategy, linkstrategy._place"']
    assert "linkstrategy._place" in {e["module"] for e in imp["linkstrategy"]}
    assert "linkstrategy._place" in st["loaded_by_import_place"]["all"]
    rows = [r for r in res["ratios"] if r["case"] == "startup"]
    assert len(rows) == 3
    assert all(r["value"] is not None and r["unit"] == "ms" for r in rows)


def test_record_jobs_read_every_record_as_the_csv_module(tmp_path: Path) -> None:
    """bench/wheeltree.py's quick RECORD reader gives what csv.reader gives, quoted or
    not, and the jobs keep <name>-<version>.data/purelib|platlib apart (scripts left out;
    another name ending in .data is a file of the package)."""
    import csv

    sys.path.insert(0, str(BENCH))
    try:
        import wheeltree
    finally:
        sys.path.remove(str(BENCH))
    rows = [
        ["p/a.py", "sha256=x", "1"],
        ["p/with,comma.py", "sha256=y", "2"],
        ['p/"quoted".py', "", ""],
        ["p/\u00e9.py", "", ""],
        ["p-1.0.data/purelib/q/b.py", "", ""],
        ["p-1.0.data/scripts/tool", "", ""],
        ["x.data", "", ""],
        ["p-1.0.dist-info/RECORD", "", ""],
        ["p/form\x0cfeed.py", "", ""],
        ["p/lone\rcr.py", "", ""],
        ["p/line\u2028separator.py", "", ""],
    ]
    for name, keep, crlf in (
        ("ascii", [0, 7], False),
        ("ascii-crlf", [0, 7], True),
        ("plain", [0, 3, 7], False),
        ("plain-crlf", [0, 3, 7], True),
        ("form-feed", [0, 8, 7], False),
        ("lone-cr", [0, 9, 7], False),  # not quoted: csv reads two paths
        ("line-separator", [0, 10, 7], False),
        ("ascii-quoted", [0, 1, 2, 7], False),
        ("quoted", None, False),
        ("crlf", None, True),
    ):
        entry = tmp_path / name
        (entry / "p-1.0.dist-info").mkdir(parents=True)
        record = entry / "p-1.0.dist-info" / "RECORD"
        chosen = rows[:9] if keep is None else [rows[i] for i in keep]
        with open(record, "w", newline="") as fh:
            csv.writer(fh, lineterminator="\r\n" if crlf else "\n").writerows(chosen)
        with open(record, newline="") as fh:
            want = [row[0] for row in csv.reader(fh) if row and row[0]]
        assert wheeltree.read_record(record) == want
        if name == "lone-cr":
            assert want == ["p/a.py", "p/lone", "cr.py", "p-1.0.dist-info/RECORD"]
            continue
        assert want == [r[0] for r in chosen]
        jobs = wheeltree.record_jobs([entry], tmp_path / "site")
        if keep is None:
            assert jobs == [
                (
                    entry,
                    tmp_path / "site",
                    [p for p in want if not p.startswith("p-1.0.data/")],  # x.data: a file
                ),
                (entry / "p-1.0.data/purelib", tmp_path / "site", ["q/b.py"]),
            ]
        else:
            assert jobs == [(entry, tmp_path / "site", want)]
