"""Profile the gateway process under load with py-spy (the recipe behind the README's figures).

    make gateway-profile                      # 200 sessions typing, then bulk output
    python -m tests.gatewaybench.profile --sessions 200 --duration 20 --scenario typing

Starts the same servers as the benchmarks, puts the load on the gateway, and
runs ``py-spy record`` on the gateway's process meanwhile.  Writes the
collapsed stacks (``gateway-<scenario>.txt``: open them in speedscope or
``flamegraph.pl``) to ``$HASTEXO_TEST_OUTPUT/profiles/``, and prints
the busiest frames and the share of samples per package (asyncio, asyncssh,
websockets, the gateway, …).  py-spy samples another process, so it needs
ptrace rights (root, or ``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile

from . import clients
from .rig import Keys, servers
from .sweep import Bench, create_stacks

#: Frame file paths → the part of the stack they belong to (first match wins, innermost frame first).
PARTS = (
    ("gateway", "hastexo_xblock/gateway/"),
    ("asyncssh crypto", "asyncssh/crypto/"),
    ("asyncssh", "asyncssh/"),
    ("websockets", "websockets/"),
    ("uvicorn", "uvicorn/"),
    ("asyncio/uvloop", "asyncio/"),
    ("asyncio/uvloop", "uvloop"),
    ("json", "json/"),
    ("django/asgiref", "django/"),
    ("django/asgiref", "asgiref/"),
)


def summarise(collapsed: str, top: int = 25) -> str:
    """Shares of samples per part (by innermost known frame) and the busiest innermost frames."""
    by_part: collections.Counter[str] = collections.Counter()
    by_frame: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames and frames[-1].strip().startswith(("select", "epoll", "<idle>")):
            continue
        total += count
        by_frame[frames[-1]] += count
        part = "other"
        for frame in reversed(frames):
            match = next((name for name, marker in PARTS if marker in frame), None)
            if match:
                part = match
                break
        by_part[part] += count
    lines = [f"busy samples: {total}"]
    lines += [f"  {part:<16}{100 * n / total:5.1f} %" for part, n in by_part.most_common()] if total else []
    lines.append("busiest frames:")
    lines += [f"  {100 * n / total:5.1f} %  {frame}" for frame, n in by_frame.most_common(top)] if total else []
    return "\n".join(lines)


async def load(bench: Bench, scenario: str, sessions: int, duration: float, spy: list[str]) -> None:
    """Open the sessions, then start ``spy`` (the py-spy command) and put on the load."""
    opened = await clients.open_many(bench.openers["gateway"], sessions)
    process = subprocess.Popen(spy)
    try:
        await asyncio.sleep(1)  # py-spy attaches
        if scenario == "typing":
            await clients.type_together(opened, duration=duration, rate=10.0)
        else:
            await asyncio.gather(
                *(clients.bulk_output(s, 30_000_000 // sessions, f"P{i}") for i, s in enumerate(opened))
            )
    finally:
        process.send_signal(2)  # SIGINT: py-spy writes what it has and exits
        process.wait(60)
        await clients.close_all(opened)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("typing", "bulk"), default="typing")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")

    run_dir = tempfile.mkdtemp(prefix="hastexo-gateway-profile-")
    os.environ.setdefault("HASTEXO_TEST_RUN_DIR", run_dir)
    os.environ.setdefault("HASTEXO_TEST_DATABASE_URL", f"sqlite:///{run_dir}/bench.db")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)
    out_dir = os.path.join(os.environ.get("HASTEXO_TEST_OUTPUT", "test-output"), "profiles")
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, f"gateway-{args.scenario}")

    keys = Keys()
    with servers(run_dir, keys) as (sshd, webssh, gateway):
        stacks = create_stacks(args.sessions, sshd, keys)
        bench = Bench(sshd, webssh, gateway, stacks, print)
        # --gil: only the thread running Python code counts (not idle pool threads or the loop's poll).
        spy = [py_spy, "record", "--pid", str(gateway.process.pid), "--rate", str(args.rate), "--gil"]
        spy += ["--format", "raw", "-o", base + ".txt"]
        asyncio.run(load(bench, args.scenario, args.sessions, args.duration, spy))
    with open(base + ".txt") as handle:
        print(summarise(handle.read()))
    print(f"collapsed stacks: {base}.txt")


if __name__ == "__main__":
    main()
