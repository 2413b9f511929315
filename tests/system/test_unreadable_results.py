"""`hpcgan summary` and `hpcgan report` skip and list files they cannot read and report the rest; with
nothing readable (an empty folder, a path that does not exist) they print one line and exit 2."""
import h5py
import pytest

from hpcgan.__main__ import main

TINY = ["train", "--steps", "4", "--batch-size", "8", "--width", "8", "--eval-samples", "64"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """One good run and one damaged .h5."""
    d = tmp_path_factory.mktemp("results")
    assert main([*TINY, "--out", str(d / "good.h5")]) == 0
    (d / "broken.h5").write_bytes((d / "good.h5").read_bytes()[:1000])
    return d


def one_error_line(capsys) -> str:
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_summary_reports_the_readable_runs_and_lists_the_others(folder, tmp_path, capsys):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = [1, 2]
    assert main(["summary", str(folder), str(tmp_path / "other.h5")]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "sync" in out
    assert f"skipped (unreadable): {folder / 'broken.h5'}" in out
    assert f"skipped (unreadable): {tmp_path / 'other.h5'}: not a results file" in out


def test_report_reports_the_readable_runs_and_lists_the_others(folder, tmp_path, capsys):
    assert main(["report", str(folder), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "broken.h5" in md.split("Skipped (unreadable):")[1] and "good" not in md.split("Skipped")[1]


@pytest.mark.parametrize("command", ["summary", "report"])
def test_nothing_readable_is_one_line_and_exit_2(tmp_path, capsys, command):
    extra = ["--out", str(tmp_path / "rep")] if command == "report" else []
    (tmp_path / "empty").mkdir()
    assert main([command, str(tmp_path / "empty"), *extra]) == 2
    assert "no readable results files under" in one_error_line(capsys)
    assert main([command, "/nonexistent/results", *extra]) == 2
    assert "/nonexistent/results: no such file or folder" in one_error_line(capsys)
