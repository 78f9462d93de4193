"""demo/seeds.py: several seeds' reports summarised row by row."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO


def report(path, rows):
    path.write_text(json.dumps({"task": "t", "models": {
        name: {"accuracy": acc, "f1": f1, "sentences_per_second": sps} for name, (acc, f1, sps) in rows.items()}}))
    return str(path)


def test_mean_spread_and_paired_differences(tmp_path):
    sys.path.insert(0, str(REPO / "demo"))
    import seeds
    acc = {"a": [86.24, 85.09, 84.5], "b": [86.35, 84.63, 84.5]}
    paths = [report(tmp_path / f"r{i}.json", {"a": (acc["a"][i], 80.0 + i, 100.0 * (i + 1)),
                                               "b": (acc["b"][i], 81.0, 50.0), "extra": (1.0, 1.0, 1.0)})
             for i in range(3)]
    out = seeds.summarise(paths, [("a", "b")])
    assert out["metrics"] == ["accuracy", "f1"] and list(out["rows"]) == ["a", "b", "extra"]
    for name in "ab":
        row = out["rows"][name]["accuracy"]
        assert row["mean"] == round(float(np.mean(acc[name])), 2)
        assert row["std"] == round(float(np.std(acc[name], ddof=1)), 2)
        assert row["seeds"] == acc[name] and row["min"] == min(acc[name]) and row["max"] == max(acc[name])
    assert out["rows"]["a"]["f1"]["mean"] == 81.0 and out["rows"]["a"]["sentences_per_second"]["mean"] == 200.0
    (pair,) = out["compare"]
    assert pair["differences"] == [-0.11, 0.46, 0.0] and pair["a_wins"] == 1 and pair["ties"] == 1
    assert pair["mean"] == round((-0.11 + 0.46) / 3, 2)
    text = seeds.table(out)
    assert "| a | 85.28 ± 0.88 |" in text and "a ahead in 1 of 3 seeds (1 tied)" in text

    # the command writes both files; a row some seed lacks is refused, naming that report
    short = report(tmp_path / "short.json", {"a": (1.0, 1.0, 1.0)})
    done = subprocess.run([sys.executable, str(REPO / "demo" / "seeds.py"), *paths, "--compare", "a", "b",
                           "--output", str(tmp_path / "s")], capture_output=True, text=True, check=True)
    assert json.loads((tmp_path / "s.json").read_text()) == json.loads(json.dumps(out))
    assert (tmp_path / "s.md").read_text() == done.stdout == text
    failed = subprocess.run([sys.executable, str(REPO / "demo" / "seeds.py"), paths[0], short,
                             "--output", str(tmp_path / "t")], capture_output=True, text=True)
    assert failed.returncode != 0 and "short.json: no row 'b'" in failed.stderr
    assert not (tmp_path / "t.json").exists()
    with pytest.raises(SystemExit, match="no row 'c'"):
        seeds.summarise(paths, [("a", "c")])
    (pair,) = seeds.summarise(paths, [("a", "b")], metric="f1")["compare"]
    assert pair["metric"] == "f1" and pair["differences"] == [-1.0, 0.0, 1.0] and pair["a_wins"] == 1
    with pytest.raises(SystemExit, match="do not all have mcc"):
        seeds.summarise(paths, [("a", "b")], metric="mcc")
    (tmp_path / "bad.json").write_text('{"models": ')
    with pytest.raises(SystemExit, match="bad.json: not a report.json"):
        seeds.summarise([paths[0], str(tmp_path / "bad.json")])
