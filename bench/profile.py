"""Where moorage's time goes: a summary of py-spy's collapsed stacks (`py-spy record --format
raw`, which `python -m bench --profile` writes; speedscope.app opens the same files).

    python -m bench.profile bench/results/profile-push-monolithic-*.txt

prints the share of each layer (system calls, the loop, aiohttp, moorage's access log, metrics
and the rest of its code), then the functions with the most samples on-CPU, by self time and by
total time (self plus callees), as percentages of all samples of the files given.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::\d+)?\)$")
_PREFIXES = ("site-packages/", "/src/", "lib/python3")


def _function(frame: str) -> str:
    """`handler (/x/site-packages/aiohttp/web.py:12)` -> `handler (aiohttp/web.py)`."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    file = match.group("file")
    for prefix in _PREFIXES:
        if prefix in file:
            file = file.split(prefix, 1)[1]
            break
    return f"{match.group('function')} ({file.lstrip('/.0123456789')})"


# Python frames whose own time is a system call (py-spy shows no native frames): the socket
# send and receive of the event loop, its epoll wait, and a stat.
_SYSTEM_CALLS = {
    "_SelectorSocketTransport.write",
    "_SelectorSocketTransport._read_ready__data_received",
    "EpollSelector.select",
    "FilesystemDriver.stat",
    "_UnixSelectorEventLoop._sock_sendfile_native_impl",
}
_LAYERS = (  # (layer, where its frames live), first match wins
    ("access log", ("moorage/logs.py", "logging/")),
    ("metrics", ("moorage/metrics.py", "prometheus_client/")),
    ("moorage, the rest", ("moorage/",)),
    ("aiohttp", ("aiohttp/", "multidict/", "yarl/", "aiosignal/")),
    ("asyncio loop", ("asyncio/", "selectors.py", "concurrent/")),
)


def layer(frame: str) -> str:
    """Which layer a leaf frame's own time belongs to."""
    if frame.split(" (")[0] in _SYSTEM_CALLS:
        return "system calls (send, recv, epoll, stat, sendfile)"
    for name, places in _LAYERS:
        if any(place in frame for place in places):
            return name
    return "other"


def summarize(files: list[Path], top: int = 15) -> str:
    own: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for file in files:
        if not file.exists():
            continue
        for line in file.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [
                _function(f) for f in stack.split(";")
                if f and not f.startswith(("process ", "thread "))
            ]
            if not frames:
                continue
            samples += count
            own[frames[-1]] += count
            layers[layer(frames[-1])] += count
            for function in set(frames):
                total[function] += count
    if samples == 0:
        return "no samples"
    lines = [f"{samples} samples on CPU", "by layer (self time):"]
    lines += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in layers.most_common()]
    lines.append("self:")
    lines += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("total (self + callees):")
    lines += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in total.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    print(summarize([Path(a) for a in sys.argv[1:]], top=25))


if __name__ == "__main__":
    main()
