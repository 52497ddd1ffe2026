"""The benchmark suite still works: its smoke mode (tiny sizes, one round) runs every workload on
moorage and the reference registry and writes a figure for each, on the filesystem and on S3
(one SeaweedFS). No timing is asserted: the machine is small and shared, and the figures of a
smoke run mean nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench.workloads import S3_WORKLOADS, WORKLOADS

REPO = Path(__file__).resolve().parents[2]
# The suite's own peers: fail with one clear line rather than skip.
TOOLS = ("docker-registry", "wrk", "hey", "skopeo")


def run_smoke(tmp_path: Path, *flags: str) -> tuple[dict[str, Any], str]:
    """`python -m bench --smoke` with `flags`; the JSON report and the table."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    assert not missing, f"the benchmark needs: apt-get install -y {' '.join(missing)}"
    output = tmp_path / "smoke.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            *flags,
            "--json",
            str(output),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report: dict[str, Any] = json.loads(output.read_text())
    for workload, metrics in report["workloads"].items():
        assert metrics, workload
        for metric in metrics:
            for registry in metric["kinds"]:  # the registries, or two setups of moorage
                summary = metric[registry]
                assert summary is not None, (workload, metric["metric"], registry)
                assert summary["median"] > 0, (workload, metric["metric"], registry, summary)
    return report, done.stdout


@pytest.mark.interop
@pytest.mark.timeout(300)
def test_smoke_mode_measures_every_workload_on_both_registries(tmp_path: Path) -> None:
    report, table = run_smoke(tmp_path)
    assert report["meta"]["storage"] == "filesystem"
    assert set(report["workloads"]) == set(WORKLOADS)
    assert "push-monolithic" in table


@pytest.mark.interop
@pytest.mark.timeout(300)
def test_smoke_mode_on_s3_measures_every_workload_on_both_registries(tmp_path: Path) -> None:
    """Both registries on one SeaweedFS; pulls redirected (the client follows the 307) and
    proxied."""
    report, table = run_smoke(tmp_path, "--storage", "s3")
    assert report["meta"]["storage"] == "s3"
    assert set(report["workloads"]) == set(S3_WORKLOADS)
    assert "pull-redirect" in table and "pull-proxied" in table
