"""The CoLA and MRPC demos on slices with tiny settings (their own file, so the suite's workers run
them beside the SST-2 chain in test_demos.py)."""

import json

from conftest import demo


def test_rosita_on_cola_and_the_mrpc_demo_from_empty_work_dirs(tmp_path):
    demo("rosita_cola.sh", "--smoke", work=tmp_path / "cola")
    report = json.loads((tmp_path / "cola" / "rosita" / "report.json").read_text())
    assert list(report["models"]) == ["teacher", "ROSITA setting 1", "pruned, gold only"]
    assert all("mcc" in m for m in report["models"].values())
    assert report["task"].startswith("cola dev (100 examples)")

    demo("mrpc.sh", "--smoke", work=tmp_path / "mrpc")
    report = json.loads((tmp_path / "mrpc" / "report.json").read_text())
    assert len(report["models"]) == 3 and all("f1" in m for m in report["models"].values())

