"""The gateway against webssh and direct SSH, on one OpenSSH sshd, in one run.

``make gateway-benchmarks`` runs :data:`FULL` (about 30 minutes on 2 cores) and
writes ``$HASTEXO_TEST_OUTPUT/benchmarks/gateway-sweep.json``; the suite's
``tests/test_benchmarks.py`` runs :data:`REDUCED` and asserts the ratios.

Each figure is taken :attr:`Plan.repetitions` times and the worst one counts
(the highest latency, CPU and memory; the lowest throughput).  What is measured:

* keystroke echo p50/p99 with N sessions each typing ``rate`` keys per second,
  for every N in :attr:`Plan.session_counts`, plus the largest N (searched
  first, in :attr:`Plan.direct_search`) at which direct SSH keeps p99 ≤ 50 ms;
* the server's CPU per 1,000 keystrokes (the gateway's or webssh's process);
* echo and CPU also through a gateway with ``--workers 2`` (:attr:`Plan.two_workers`);
* bulk output (``base64`` of random bytes in the lab): bytes/s for one session
  and for :attr:`Plan.bulk_sessions` at once, and the server's CPU per MB;
* RSS per idle session (the server process's growth over :attr:`Plan.idle_sessions`);
* a reader that stalls for :attr:`Plan.stall_seconds` while the lab prints
  ``seq`` without pause, with and without websocket pings: the gateway's RSS
  growth, and that every line then arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import clients
from .rig import GatewayServer, Keys, gateway_env, servers, wait_until

#: Direct SSH's p99 bound that defines the largest session count compared.
DIRECT_P99_BOUND_MS = 50.0
KINDS = ("direct", "webssh", "gateway")
#: The gateway as deployed on this 2-core machine: ``--workers 2`` (one per core).
X2 = "gateway_x2"


@dataclass
class Plan:
    session_counts: tuple[int, ...] = (1, 20, 100, 200)
    direct_search: tuple[int, ...] = (150, 200, 250, 300, 400, 500, 600)
    repetitions: int = 3
    duration: float = 10.0
    #: Keys per second per session.
    rate: float = 10.0
    #: Sessions of one count opened once per repetition for all three kinds.
    bulk_bytes: int = 30_000_000
    bulk_sessions: int = 20
    bulk_bytes_each: int = 3_000_000
    idle_sessions: int = 150
    stall_seconds: float = 30.0
    #: ``seq 1 11300000`` prints about 100 MB.
    stall_lines: int = 11_300_000
    #: Single-session echo needs more keys for a meaningful p99.
    single_session_duration: float = 60.0
    #: Also measure echo through a second gateway with ``--workers 2``.
    two_workers: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


FULL = Plan()
REDUCED = Plan(
    session_counts=(1, 20, 100),
    direct_search=(),
    repetitions=1,
    duration=5.0,
    # One session needs about a second of output for a steady rate (10 MB took 0.3 s and varied by 1.7x).
    bulk_bytes=30_000_000,
    bulk_sessions=5,
    bulk_bytes_each=2_000_000,
    idle_sessions=60,
    stall_seconds=5.0,
    stall_lines=3_000_000,
    single_session_duration=20.0,
    two_workers=False,
)


def create_stacks(count: int, sshd: Any, keys: Keys) -> list[Any]:
    """``count`` running stacks on the sshd (one per session: tickets are bound to one)."""
    from hastexo_xblock import states
    from hastexo_xblock.models import Stack

    prefix = f"bench-{int(time.time() * 1000) % 10**9}"
    return [
        Stack.objects.create(
            name=f"{prefix}-{index}",
            course_id="course-v1:hastexo+bench+run",
            anonymous_user_id=f"{prefix}-learner-{index}",
            status=states.CREATE_COMPLETE,
            ip="127.0.0.1",
            ssh_port=sshd.port,
            ssh_user=getpass.getuser(),
            private_key=keys.client_private,
            host_key=keys.host_public,
        )
        for index in range(count)
    ]


class Bench:
    """The servers and the openers of each kind for one run."""

    def __init__(
        self,
        sshd: Any,
        webssh: Any,
        gateway: Any,
        stacks: list[Any],
        log: Callable[[str], None],
        fresh_gateway: Callable[[], Any] | None = None,
        gateway_x2: Any = None,
    ) -> None:
        from hastexo_xblock.conf import get_settings
        from hastexo_xblock.gateway import tickets
        from hastexo_xblock.gateway.terminal import SSHTarget

        self.sshd, self.webssh, self.gateway = sshd, webssh, gateway
        self.log = log
        self.targets = [SSHTarget.from_stack(stack) for stack in stacks]
        secret = get_settings().ticket_secret

        def ticket(index: int) -> str:
            stack = stacks[index]
            return tickets.mint(
                secret,
                stack_id=stack.pk,
                stack_name=stack.name,
                learner=stack.anonymous_user_id,
                protocol="ssh",
                port=None,
                read_only=False,
            )

        # webssh registers a login per client address without a lock: two logins from one
        # address at once can lose one ("Websocket authentication failed").  One at a time.
        webssh_gate = asyncio.Lock()

        async def open_webssh(index: int) -> clients.Session:
            async with webssh_gate:
                return await clients.WebsocketSession.open_webssh(webssh.port, self.targets[index])

        self.ticket = ticket
        self.fresh_gateway = fresh_gateway
        self.openers: dict[str, clients.Opener] = {
            "direct": lambda i: clients.DirectSession.open(self.targets[i]),
            "webssh": open_webssh,
            "gateway": lambda i: clients.WebsocketSession.open_gateway(gateway.url, ticket(i)),
        }
        self.server_of = {"direct": None, "webssh": webssh, "gateway": gateway}
        if gateway_x2 is not None:
            self.openers[X2] = lambda i: clients.WebsocketSession.open_gateway(gateway_x2.url, ticket(i))
            self.server_of[X2] = gateway_x2

    def cpu(self, kind: str) -> float:
        server = self.server_of[kind]
        return server.cpu_seconds() if server is not None else 0.0

    async def echo(self, kind: str, count: int, duration: float, rate: float) -> dict[str, Any]:
        sessions = await clients.open_many(self.openers[kind], count)
        try:
            await asyncio.sleep(0.5)  # let the opening settle
            cpu, sshd_cpu = self.cpu(kind), self.sshd.cpu_seconds()
            samples = await clients.type_together(sessions, duration=duration, rate=rate)
            cpu, sshd_cpu = self.cpu(kind) - cpu, self.sshd.cpu_seconds() - sshd_cpu
        finally:
            await clients.close_all(sessions)
        result = clients.latency_summary(samples)
        if kind != "direct":
            result["server_cpu_ms_per_1000_keys"] = round(cpu * 1e6 / len(samples), 2)
        result["sshd_cpu_ms_per_1000_keys"] = round(sshd_cpu * 1e6 / len(samples), 2)
        return result

    async def bulk(self, kind: str, count: int, each: int) -> dict[str, Any]:
        sessions = await clients.open_many(self.openers[kind], count)
        try:
            cpu = self.cpu(kind)
            started = time.perf_counter()
            runs = await asyncio.gather(
                *(clients.bulk_output(session, each, f"BULK{index}") for index, session in enumerate(sessions))
            )
            elapsed = time.perf_counter() - started
            cpu = self.cpu(kind) - cpu
        finally:
            await clients.close_all(sessions)
        total = sum(run.bytes for run in runs)
        result = {"sessions": count, "mb": round(total / 1e6, 2), "mb_per_s": round(total / 1e6 / elapsed, 2)}
        if kind != "direct":
            result["server_cpu_s_per_mb"] = round(cpu / (total / 1e6), 4)
        return result

    async def idle_rss(self, kind: str, count: int) -> dict[str, Any]:
        server = self.server_of[kind]
        # Warm up first: the first sessions load modules and fill caches that later ones share.
        await clients.close_all(await clients.open_many(self.openers[kind], 4))
        await asyncio.sleep(0.5)
        before = server.rss()
        sessions = await clients.open_many(self.openers[kind], count)
        try:
            await asyncio.sleep(2)
            after = server.rss()
        finally:
            await clients.close_all(sessions)
        return {"sessions": count, "rss_kib_per_session": round((after - before) / 1024 / count, 1)}

    async def stall(self, lines: int, seconds: float, ping_every: float | None) -> dict[str, Any]:
        """On a gateway process of its own: in one that served hundreds of sessions, the
        allocator's free memory would hide any growth."""
        fresh = self.fresh_gateway is not None
        server = await asyncio.to_thread(self.fresh_gateway) if fresh else self.gateway  # type: ignore[misc]
        try:
            session = await clients.WebsocketSession.open_gateway(server.url, self.ticket(0))
            try:
                return await clients.stalled_reader(
                    session, lines=lines, stall=seconds, ping_every=ping_every, sample_rss=server.rss
                )
            finally:
                await session.close()
        finally:
            if fresh:
                await asyncio.to_thread(server.stop)


def _worst(runs: list[dict[str, Any]]) -> dict[str, Any]:
    worst: dict[str, Any] = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        if key in ("mb_per_s",):
            worst[key] = min(values)
        elif isinstance(values[0], (int, float)):
            worst[key] = max(values)
        else:
            worst[key] = values[0]
    return worst


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


async def measure(bench: Bench, plan: Plan) -> dict[str, Any]:
    log = bench.log
    report: dict[str, Any] = {"plan": asdict(plan), "load_before": os.getloadavg()}

    # Memory first, before any larger session count has grown the processes.
    report["server_rss_mb_at_start"] = {
        kind: round(bench.server_of[kind].rss() / 1e6, 1) for kind in ("webssh", "gateway")
    }
    report["idle_rss"] = {kind: await bench.idle_rss(kind, plan.idle_sessions) for kind in ("webssh", "gateway")}
    log(f"idle RSS: {report['idle_rss']}")

    counts = list(plan.session_counts)
    largest_ok = None
    search: dict[int, Any] = {}
    for count in plan.direct_search:
        result = await bench.echo("direct", count, plan.duration, plan.rate)
        search[count] = result
        log(f"direct search, {count} sessions: {result}")
        if result["p99_ms"] > DIRECT_P99_BOUND_MS:
            break
        largest_ok = count
    report["direct_search"] = search
    report["largest_direct_p99_under_50ms"] = largest_ok
    if largest_ok is not None and largest_ok not in counts:
        counts.append(largest_ok)

    echo_kinds = (*KINDS, X2) if X2 in bench.openers else KINDS
    echo_runs: dict[int, dict[str, list[dict[str, Any]]]] = {n: {k: [] for k in echo_kinds} for n in counts}
    bulk_runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        "one": {k: [] for k in KINDS},
        "many": {k: [] for k in KINDS},
    }
    for repetition in range(plan.repetitions):
        for count in counts:
            duration = plan.single_session_duration if count == 1 else plan.duration
            for kind in echo_kinds:
                result = await bench.echo(kind, count, duration, plan.rate)
                echo_runs[count][kind].append(result)
                log(f"rep {repetition + 1}, echo, {count} sessions, {kind}: {result}")
        for kind in KINDS:
            one = await bench.bulk(kind, 1, plan.bulk_bytes)
            many = await bench.bulk(kind, plan.bulk_sessions, plan.bulk_bytes_each)
            bulk_runs["one"][kind].append(one)
            bulk_runs["many"][kind].append(many)
            log(f"rep {repetition + 1}, bulk, {kind}: one {one}, many {many}")

    echo = {n: {k: _worst(runs) for k, runs in by_kind.items()} for n, by_kind in echo_runs.items()}
    bulk = {size: {k: _worst(runs) for k, runs in by_kind.items()} for size, by_kind in bulk_runs.items()}
    report["echo_runs"] = echo_runs
    report["bulk_runs"] = bulk_runs
    report["echo"] = echo
    report["bulk"] = bulk

    stall = {}
    for name, ping_every in (("no_pings", None), ("with_pings", 1.0)):
        stall[name] = await bench.stall(plan.stall_lines, plan.stall_seconds, ping_every)
        log(f"stalled reader, {name}: {stall[name]}")
    report["stall"] = stall
    report["load_after"] = os.getloadavg()
    # Judged on the worst of the repetitions: the largest count at which direct SSH kept p99 ≤ 50 ms.
    within = [n for n in counts if echo[n]["direct"]["p99_ms"] <= DIRECT_P99_BOUND_MS]
    largest_ok = max(within) if within else None
    report["largest_direct_p99_under_50ms_all_repetitions"] = largest_ok
    report["ratios"] = ratios(report, largest_ok)
    report["acceptance"] = acceptance(report)
    return report


def ratios(report: dict[str, Any], largest_ok: int | None) -> dict[str, Any]:
    """Gateway ÷ peer for every figure (lower is better, except throughput)."""
    echo, bulk = report["echo"], report["bulk"]
    out: dict[str, Any] = {"echo": {}, "cpu_per_1000_keys": {}}
    for count, by_kind in echo.items():
        gw, ws, direct = by_kind["gateway"], by_kind["webssh"], by_kind["direct"]
        out["echo"][count] = {
            "p50_vs_webssh": _ratio(gw["p50_ms"], ws["p50_ms"]),
            "p99_vs_webssh": _ratio(gw["p99_ms"], ws["p99_ms"]),
            "p50_vs_direct": _ratio(gw["p50_ms"], direct["p50_ms"]),
            "p99_vs_direct": _ratio(gw["p99_ms"], direct["p99_ms"]),
        }
        out["cpu_per_1000_keys"][count] = _ratio(gw["server_cpu_ms_per_1000_keys"], ws["server_cpu_ms_per_1000_keys"])
        if X2 in by_kind:
            x2 = by_kind[X2]
            out["echo"][count].update(
                {
                    "x2_p50_vs_webssh": _ratio(x2["p50_ms"], ws["p50_ms"]),
                    "x2_p99_vs_webssh": _ratio(x2["p99_ms"], ws["p99_ms"]),
                    "x2_p50_vs_direct": _ratio(x2["p50_ms"], direct["p50_ms"]),
                    "x2_p99_vs_direct": _ratio(x2["p99_ms"], direct["p99_ms"]),
                }
            )
    if largest_ok is not None:
        out["p99_vs_direct_at_largest"] = {"sessions": largest_ok, **out["echo"][largest_ok]}
    out["bulk"] = {
        size: {
            "mb_per_s_vs_webssh": _ratio(by_kind["gateway"]["mb_per_s"], by_kind["webssh"]["mb_per_s"]),
            "mb_per_s_vs_direct": _ratio(by_kind["gateway"]["mb_per_s"], by_kind["direct"]["mb_per_s"]),
            "cpu_per_mb_vs_webssh": _ratio(
                by_kind["gateway"]["server_cpu_s_per_mb"], by_kind["webssh"]["server_cpu_s_per_mb"]
            ),
        }
        for size, by_kind in bulk.items()
    }
    rss = report["idle_rss"]
    out["idle_rss_vs_webssh"] = _ratio(rss["gateway"]["rss_kib_per_session"], rss["webssh"]["rss_kib_per_session"])
    # Sessions per core at 10 keys/s each, from the worst CPU per keystroke at the highest count.
    top = max(echo, key=int)
    for kind in ("gateway", "webssh"):
        per_key_s = echo[top][kind]["server_cpu_ms_per_1000_keys"] / 1e6
        out[f"{kind}_typing_sessions_per_core"] = int(1 / (per_key_s * report["plan"]["rate"])) if per_key_s else None
    return out


def acceptance(report: dict[str, Any], slack: float = 1.0) -> dict[str, dict[str, Any]]:
    """Issue 13's acceptance criteria, each with its value, its limit and whether it is met.

    ``slack`` > 1 loosens every limit by that factor (the suite's reduced run on a
    shared CI machine); the full sweep is judged with 1.0.
    """
    checks: dict[str, dict[str, Any]] = {}

    def check(name: str, value: float | None, limit: float, at_most: bool = True) -> None:
        bound = limit * slack if at_most else limit / slack
        ok = value is not None and (value <= bound if at_most else value >= bound)
        checks[name] = {"value": value, "limit": round(bound, 3), "at_most": at_most, "ok": ok}

    ratios_ = report["ratios"]
    for count, echo in ratios_["echo"].items():
        check(f"echo p50 vs webssh, {count} sessions", echo["p50_vs_webssh"], 1.0)
        check(f"echo p99 vs webssh, {count} sessions", echo["p99_vs_webssh"], 1.0)
    largest = ratios_.get("p99_vs_direct_at_largest")
    if largest:
        check(f"echo p99 vs direct, {largest['sessions']} sessions", largest["p99_vs_direct"], 1.5)
        if "x2_p99_vs_direct" in largest:
            check(
                f"echo p99 vs direct, {largest['sessions']} sessions, gateway with 2 workers",
                largest["x2_p99_vs_direct"],
                1.5,
            )
    for count, ratio in ratios_["cpu_per_1000_keys"].items():
        # What sizes a deployment is the CPU under load; with a few sessions a keystroke's cost is
        # mostly waking an idle process (reported in the ratios, not judged).
        if int(count) >= 100:
            check(f"CPU per 1,000 keystrokes vs webssh, {count} sessions", ratio, 0.5)
    for size, bulk in ratios_["bulk"].items():
        check(f"bulk CPU per MB vs webssh ({size})", bulk["cpu_per_mb_vs_webssh"], 0.5)
        check(f"bulk MB/s vs webssh ({size})", bulk["mb_per_s_vs_webssh"], 1.0, at_most=False)
        check(f"bulk MB/s vs direct ({size})", bulk["mb_per_s_vs_direct"], 0.9, at_most=False)
    check("idle RSS per session vs webssh", ratios_["idle_rss_vs_webssh"], 1.0)
    for name, stall in report["stall"].items():
        checks[f"stalled reader ({name}): RSS growth under 20 MB, no loss, still open"] = {
            "value": stall["rss_growth_mb"],
            "limit": 20,
            "ok": stall["rss_growth_mb"] < 20 and stall["complete"] and stall["connection_open"],
        }
    return checks


def run(plan: Plan, run_dir: str, database_name: str | None = None, log: Callable[[str], None] = print) -> dict:
    """Start the servers, measure ``plan``, stop them; the report (also with the machine's load)."""
    keys = Keys()
    with servers(run_dir, keys, database_name) as (sshd, webssh, gateway):
        stacks = create_stacks(
            max([*plan.session_counts, *plan.direct_search, plan.idle_sessions, plan.bulk_sessions]), sshd, keys
        )
        x2 = GatewayServer(run_dir, gateway_env(database_name), workers=2) if plan.two_workers else None
        if x2 is not None:
            wait_until(lambda: len(x2.processes()) == 2, 30, "the second gateway's two workers")
        bench = Bench(
            sshd,
            webssh,
            gateway,
            stacks,
            log,
            fresh_gateway=lambda: GatewayServer(run_dir, gateway_env(database_name)),
            gateway_x2=x2,
        )
        try:
            import uvloop

            return uvloop.run(measure(bench, plan))
        except ImportError:
            return asyncio.run(measure(bench, plan))
        finally:
            if x2 is not None:
                x2.stop()


def markdown_table(report: dict[str, Any]) -> str:
    """The README's table: every figure of the worst repetition, with the ratios to webssh and direct."""
    echo, bulk, ratios_ = report["echo"], report["bulk"], report["ratios"]
    with_x2 = any(X2 in by_kind for by_kind in echo.values())
    rows = [
        f"| figure (worst of {report['plan']['repetitions']} runs) | direct asyncssh | webssh | gateway "
        "| gateway ÷ webssh | gateway ÷ direct |" + (" gateway, 2 workers | ÷ webssh | ÷ direct |" if with_x2 else ""),
        "| --- | --- | --- | --- | --- | --- |" + (" --- | --- | --- |" if with_x2 else ""),
    ]
    none3 = " — | — | — |" if with_x2 else ""
    for count in sorted(echo, key=int):
        by_kind, ratio = echo[count], ratios_["echo"][count]
        for stat in ("p50", "p99"):
            values = [by_kind[kind][f"{stat}_ms"] for kind in KINDS]
            rows.append(
                f"| echo {stat}, {count} session{'s' if int(count) > 1 else ''} (ms) | "
                + " | ".join(f"{value:.2f}" for value in values)
                + f" | {ratio[f'{stat}_vs_webssh']}× | {ratio[f'{stat}_vs_direct']}× |"
                + (
                    f" {by_kind[X2][f'{stat}_ms']:.2f} | {ratio[f'x2_{stat}_vs_webssh']}× |"
                    f" {ratio[f'x2_{stat}_vs_direct']}× |"
                    if X2 in by_kind
                    else none3
                )
            )
    for count in sorted(echo, key=int):
        if int(count) < 20:
            continue
        gw = echo[count]["gateway"]["server_cpu_ms_per_1000_keys"]
        ws = echo[count]["webssh"]["server_cpu_ms_per_1000_keys"]
        rows.append(
            f"| server CPU per 1,000 keystrokes, {count} sessions (ms) | — | {ws:.0f} | {gw:.0f} | "
            f"{ratios_['cpu_per_1000_keys'][count]}× | — |"
            + (
                f" {echo[count][X2]['server_cpu_ms_per_1000_keys']:.0f} | "
                f"{_ratio(echo[count][X2]['server_cpu_ms_per_1000_keys'], ws)}× | — |"
                if X2 in echo[count]
                else none3
            )
        )
    for size, label in (("one", "1 session"), ("many", f"{report['plan']['bulk_sessions']} sessions")):
        by_kind, ratio = bulk[size], ratios_["bulk"][size]
        rows.append(
            f"| bulk output, {label} (MB/s) | "
            + " | ".join(f"{by_kind[kind]['mb_per_s']:.1f}" for kind in KINDS)
            + f" | {ratio['mb_per_s_vs_webssh']}× | {ratio['mb_per_s_vs_direct']}× |"
            + none3
        )
        rows.append(
            f"| server CPU per MB of output, {label} (ms) | — | "
            f"{by_kind['webssh']['server_cpu_s_per_mb'] * 1000:.1f} | "
            f"{by_kind['gateway']['server_cpu_s_per_mb'] * 1000:.1f} | {ratio['cpu_per_mb_vs_webssh']}× | — |" + none3
        )
    rss = report["idle_rss"]
    rows.append(
        f"| RSS per idle session, {rss['gateway']['sessions']} sessions (KiB) | — | "
        f"{rss['webssh']['rss_kib_per_session']} | {rss['gateway']['rss_kib_per_session']} | "
        f"{ratios_['idle_rss_vs_webssh']}× | — |" + none3
    )
    for name, stall in report["stall"].items():
        rows.append(
            f"| reader stalled {stall['stall_s']:.0f} s, {name.replace('_', ' ')}: gateway RSS growth (MB), "
            f"all {stall['lines']:,} lines after | — | — | {stall['rss_growth_mb']} "
            f"({'complete' if stall['complete'] else 'LOST OUTPUT'}) | — | — |" + none3
        )
    return "\n".join(rows)


def write_report(report: dict[str, Any], name: str) -> str:
    directory = os.path.join(os.environ.get("HASTEXO_TEST_OUTPUT", "test-output"), "benchmarks")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        json.dump(report, handle, indent=2, default=str)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reduced", action="store_true", help="the suite's reduced plan")
    parser.add_argument("--repetitions", type=int)
    parser.add_argument("--table", metavar="REPORT", help="print the README table of a report and exit")
    parser.add_argument(
        "--rejudge", action="store_true", help="with --table: recompute the ratios and acceptance and save them"
    )
    args = parser.parse_args(argv)
    if args.table:
        with open(args.table) as handle:
            report = json.load(handle)
        if args.rejudge:
            largest = report.get("largest_direct_p99_under_50ms_all_repetitions")
            report["ratios"] = ratios(report, str(largest) if largest is not None else None)
            report["acceptance"] = acceptance(report)
            with open(args.table, "w") as handle:
                json.dump(report, handle, indent=2)
            for name, result in report["acceptance"].items():
                print(f"{'ok ' if result['ok'] else 'NOT'} {name}: {result['value']} (limit {result['limit']})")
        print(markdown_table(report))
        return
    plan = REDUCED if args.reduced else FULL
    if args.repetitions:
        plan.repetitions = args.repetitions

    run_dir = tempfile.mkdtemp(prefix="hastexo-gateway-bench-")
    os.environ.setdefault("HASTEXO_TEST_RUN_DIR", run_dir)
    os.environ.setdefault("HASTEXO_TEST_DATABASE_URL", f"sqlite:///{run_dir}/bench.db")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)

    def log(line: str) -> None:
        print(line, flush=True)

    report = run(plan, run_dir, log=log)
    report["uptime_load_note"] = "load averages (1, 5, 15 min) before and after; 2 cores shared"
    path = write_report(report, "gateway-sweep.json")
    print(markdown_table(json.loads(json.dumps(report, default=str))))
    print(json.dumps(report["ratios"], indent=2))
    for name, result in report["acceptance"].items():
        print(f"{'ok ' if result['ok'] else 'NOT'} {name}: {result['value']} (limit {result['limit']})")
    print(f"written: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
