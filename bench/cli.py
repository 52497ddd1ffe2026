"""`python -m bench`: moorage against the reference registry (CNCF distribution 2.8), side by
side on loopback in the same run, every workload of the benchmark issue; a table to stdout and
JSON to bench/results/latest.json. Run it from the repository root (it imports tests/servers.py).
With --storage s3 both run on one SeaweedFS (JSON to bench/results/latest-s3.json).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.servers import run_seaweedfs

from bench.profile import summarize
from bench.registries import FILESYSTEM, S3, STORAGES
from bench.report import Results
from bench.workloads import FULL, FULL_S3, S3_WORKLOADS, SMOKE, SMOKE_S3, WORKLOADS, Bench

RESULTS = Path(__file__).resolve().parent / "results"
TOOLS = {
    "docker-registry": "docker-registry",
    "wrk": "wrk",
    "hey": "hey",
    "skopeo": "skopeo",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one round, seconds: proves the suite works (CI)")
    parser.add_argument("--storage", choices=STORAGES, default=FILESYSTEM,
                        help="the driver both registries use (default filesystem); s3: one "
                             "SeaweedFS for both, a bucket each")
    parser.add_argument("--only", action="append", choices=sorted({*WORKLOADS, *S3_WORKLOADS}),
                        metavar="WORKLOAD",
                        help=f"run only this workload (repeatable): {', '.join(WORKLOADS)}; "
                             f"with --storage s3: {', '.join(S3_WORKLOADS)}")
    parser.add_argument("--rounds", type=int, help="rounds per workload (default 3; smoke 1)")
    parser.add_argument("--json", type=Path,
                        help="where the JSON goes (default bench/results/latest.json, "
                             "latest-s3.json with --storage s3)")
    parser.add_argument("--workdir", type=Path,
                        help="keep blob files and roots here (reused by later runs); "
                             "default: a temporary directory, removed at the end")
    parser.add_argument("--profile", action="store_true",
                        help="sample moorage with py-spy during each workload (slows it: the "
                             "figures of such a run are not comparable); writes collapsed "
                             "stacks to bench/results/profile-*.txt and prints a summary")
    return parser.parse_args(argv)


def _check_tools() -> None:
    missing = [package for command, package in TOOLS.items() if shutil.which(command) is None]
    if missing:
        sys.exit(f"bench: missing tools; install them with: apt-get install -y {' '.join(missing)}")


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) \
        else "?"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    _check_tools()
    on_s3 = args.storage == S3
    workloads = S3_WORKLOADS if on_s3 else WORKLOADS
    scales = {(False, False): FULL, (False, True): SMOKE, (True, False): FULL_S3,
              (True, True): SMOKE_S3}
    scale = scales[(on_s3, args.smoke)]
    rounds = args.rounds or (1 if args.smoke else 3)
    selected = args.only or list(workloads)
    unknown = [name for name in selected if name not in workloads]
    if unknown:
        sys.exit(f"bench: not a workload with --storage {args.storage}: {', '.join(unknown)} "
                 f"(these are: {', '.join(workloads)})")
    json_path = args.json or RESULTS / ("latest-s3.json" if on_s3 else "latest.json")
    results = Results()
    results.meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": "smoke" if args.smoke else "full",
        "storage": args.storage,
        "rounds": rounds,
        "workloads": selected,
        "profiled": args.profile,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                 "kernel": platform.release()},
        "reference": _version(["docker-registry", "--version"]),
        "settings": ("s3 driver on one SeaweedFS (a bucket each), pulls redirected to a "
                     "presigned URL and proxied (storage.redirect.disable), rss proxied"
                     if on_s3 else "filesystem driver")
        + ", storage.cache.blobdescriptor: inmemory, deletes enabled, log level info, "
          "moorage with http.workers: auto unless the metric says otherwise, 127.0.0.1",
        "figures": "median over rounds, [min-max] spread; ratio = moorage / reference "
                   "(with *: the median of the rounds' ratios)",
    }
    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="moorage-bench-")) if temporary else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    profile_dir = RESULTS if args.profile else None
    workdir = workdir.resolve()
    bench = Bench(scale, rounds, workdir, results, profile_dir)
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            if on_s3:
                print("bench: starting SeaweedFS ...", file=sys.stderr, flush=True)
                bench.s3 = stack.enter_context(run_seaweedfs(workdir / "seaweedfs"))
            for name in selected:
                began = time.monotonic()
                print(f"bench: {name} ...", file=sys.stderr, flush=True)
                workloads[name](bench)
                print(f"bench: {name} done in {time.monotonic() - began:.0f}s",
                      file=sys.stderr, flush=True)
                results.write(json_path)  # what is done so far survives a later failure
    finally:
        results.meta["seconds"] = round(time.monotonic() - started, 1)
        results.write(json_path)
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            for roots in (workdir / "roots", workdir / "seaweedfs"):
                shutil.rmtree(roots, ignore_errors=True)
    print(f"storage: {args.storage}")
    print(results.table())
    print(f"\n{results.meta['figures']}; JSON: {json_path}")
    if args.profile:
        for workload, files in bench.profiles.items():
            print(f"\n== moorage profile, {workload} ({len(files)} file(s): "
                  f"{RESULTS}/profile-{workload}-*.txt)")
            print(summarize(files))
    return 0
