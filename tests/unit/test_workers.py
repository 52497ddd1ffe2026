"""How many workers `http.workers: auto` starts: the CPU quota on the process's cgroups, read
from cgroup trees laid out here as the kernel presents them (moorage/workers.py)."""

from __future__ import annotations

from pathlib import Path

from moorage.workers import cpu_quota


def write(directory: Path, **files: str) -> None:
    """Files named by the keywords, their first underscore a dot (`cpu_max`: cpu.max)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name.replace("_", ".", 1)).write_text(content + "\n")


def membership(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cgroup"
    path.write_text(text)
    return str(path)


def test_v2_container_sees_its_quota_at_the_root(tmp_path: Path) -> None:
    root = tmp_path / "fs"
    write(root, cpu_max="150000 100000", cgroup_controllers="cpu memory")
    assert cpu_quota(str(root), membership(tmp_path, "0::/\n")) == 1.5


def test_v2_unit_quota_on_its_own_cgroup_or_above(tmp_path: Path) -> None:
    root = tmp_path / "fs"
    write(root, cgroup_controllers="cpu memory")
    write(root / "system.slice", cpu_max="max 100000")
    write(root / "system.slice" / "moorage.service", cpu_max="50000 100000")
    member = membership(tmp_path, "0::/system.slice/moorage.service\n")
    assert cpu_quota(str(root), member) == 0.5
    write(root / "system.slice", cpu_max="20000 100000")
    assert cpu_quota(str(root), member) == 0.2


def test_v1_container_without_a_cgroup_namespace(tmp_path: Path) -> None:
    # /proc/self/cgroup names the host's path; the container has its own cgroup mounted at the
    # hierarchy's root.
    root = tmp_path / "fs"
    write(root / "cpu", cpu_cfs_quota_us="100000", cpu_cfs_period_us="100000")
    write(root / "memory")
    text = "9:memory:/docker/abc\n3:cpu:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n"
    assert cpu_quota(str(root), membership(tmp_path, text)) == 1.0


def test_v1_combined_controllers_and_a_nested_limit(tmp_path: Path) -> None:
    root = tmp_path / "fs"
    write(root / "cpu,cpuacct", cpu_cfs_quota_us="-1", cpu_cfs_period_us="100000")
    write(
        root / "cpu,cpuacct" / "limited",
        cpu_cfs_quota_us="250000",
        cpu_cfs_period_us="100000",
    )
    text = "4:cpu,cpuacct:/limited\n"
    assert cpu_quota(str(root), membership(tmp_path, text)) == 2.5


def test_no_quota_anywhere(tmp_path: Path) -> None:
    root = tmp_path / "fs"
    write(root / "cpu", cpu_cfs_quota_us="-1", cpu_cfs_period_us="100000")
    write(root, cpu_max="max 100000")
    text = "3:cpu:/\n0::/\n"
    assert cpu_quota(str(root), membership(tmp_path, text)) is None
    assert cpu_quota(str(root), str(tmp_path / "no-such-file")) is None
