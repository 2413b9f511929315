"""``hpcgan claims --quick`` writes one row per quick claim, and every verdict follows from its CI."""
import json
import subprocess
import sys

from hpcgan.claims import claims


def test_quick_claims_write_a_table_whose_verdicts_follow_from_the_intervals(tmp_path):
    r = subprocess.run([sys.executable, "-m", "hpcgan", "claims", "--quick", "--seeds", "2", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    text = (tmp_path / "claims.md").read_text()
    assert (tmp_path / "claims.png").stat().st_size > 1000
    assert "Machine: " in text and "Seeds: 0, 1 (2 per arm)" in text
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| paper"))) + 2
    rows = lines[start:lines.index("", start)]
    quick = claims(quick=True)
    arms = {a.name for c in quick for a in c.arms}
    section = text.split("## Arms")[1].split("\n## ")[0].splitlines()
    assert sum(line.startswith(tuple(f"| {a} |" for a in arms)) for line in section) == len(arms)
    assert "## Learning rates" in text and "## Learning curves" in text, "tuned arms print their choice and curves"
    assert len(rows) == len(quick) >= 3
    numbers = json.loads((tmp_path / "claims.json").read_text())["claims"]
    for row, claim, got in zip(rows, quick, numbers):
        paper, sentence, effect, threshold, conditions, verdict = [c.strip() for c in row.strip("|").split("|")]
        assert (paper, sentence) == (claim.paper, claim.sentence) == (got["paper"], got["claim"])
        assert len(got["effects"]) == 2 and " ± " in effect
        lo, hi, c = got["mean"] - got["half_width"], got["mean"] + got["half_width"], got["threshold"]
        want = "does not hold" if hi < c else ("holds" if lo > c and all(got["conditions"].values()) else "inconclusive")
        assert verdict == f"**{want}**" and got["verdict"] == want, row
        assert f"### {claim.paper}: {claim.sentence}" in text and "--seed S" in text
