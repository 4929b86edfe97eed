#!/usr/bin/env python3
"""The one-command demo: ``python3 hastexo_xblock/demo/run.py``.

On a machine with only Python 3.11+ it creates ``.venv`` beside the
project, installs the pinned demo requirements and the project, migrates a
SQLite database under ``var/``, and starts four processes: the XBlock
workbench (Django), the websocket gateway (uvicorn), a Celery worker and
Celery beat, on kombu's filesystem broker.  It prints the URL of the
"Linux basics" scenario.  Ctrl-C stops every process it started, and the
lab hosts the worker started (their files stay; the next visit resumes the
lab from them).

Uses only the standard library until it re-executes itself inside the venv.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
import venv

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(os.path.dirname(HERE))
VENV = os.environ.get("HASTEXO_VENV", os.path.join(PROJECT, ".venv"))
VENV_PYTHON = os.path.join(VENV, "bin", "python")
SCENARIO = "hastexo.0"
#: The "Linux desktop" scenarios (block.py's workbench_scenarios, in that order).
DESKTOP_SCENARIO = "hastexo.1"
READ_ONLY_DESKTOP_SCENARIO = "hastexo.2"


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def ensure_venv() -> None:
    """Create the venv and install the project into it unless that is already done."""
    marker = os.path.join(VENV, ".hastexo-demo-installed")
    requirements = os.path.join(PROJECT, "requirements", "demo.txt")
    stamp = f"{os.path.getmtime(requirements)}:{os.path.getmtime(os.path.join(PROJECT, 'setup.py'))}"
    if os.path.exists(marker):
        with open(marker) as handle:
            if handle.read() == stamp:
                return
    if not os.path.exists(VENV_PYTHON):
        say(f"creating a virtualenv in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    say("installing the demo requirements (first run: a minute or two)")
    pip = [VENV_PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-r", requirements], check=True)
    subprocess.run([*pip, "--no-deps", "-e", PROJECT], check=True)
    with open(marker, "w") as handle:
        handle.write(stamp)


def wait_for_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 -- our own loopback URL
                return True
        except OSError:
            time.sleep(0.2)
    return False


def choose_sandbox() -> str:
    """``auto`` when this machine can sandbox labs (the demo then always does); else ``none``, said loudly."""
    from hastexo_xblock.providers.local.config import SandboxSettings
    from hastexo_xblock.providers.local.probe import probe

    settings = SandboxSettings()
    caps = probe(settings)
    missing = caps.missing(settings)
    if missing:
        say("WARNING: this machine cannot sandbox labs: " + "; ".join(missing))
        say("WARNING: the demo's labs run WITHOUT ISOLATION: a learner's shell can reach this machine.")
        say("Install bubblewrap (apt-get install bubblewrap) and start the demo again to sandbox them.")
        return "none"
    unenforced = caps.unenforced(settings)
    say(
        "labs run sandboxed: namespaces of their own, no network, a user of their own"
        + (" (as root)" if os.geteuid() == 0 else "")
    )
    if unenforced:
        say("not enforced on this machine: " + "; ".join(unenforced))
    return "auto"


def labs_dir(var: str) -> str:
    """Where the demo's labs live: ``var/labs``, unless a root worker's labs could not reach it.

    As root, every lab runs as a user of its own, which must pass through each
    directory above its home; a checkout under /root (0700) does not allow
    that, so the labs then live under /var/lib/hastexo_xblock/demo/.
    """
    default = os.path.join(var, "labs")
    if os.geteuid() != 0:
        return default
    current = os.path.dirname(var)
    while current != os.path.dirname(current):
        if not os.stat(current).st_mode & stat.S_IXOTH:
            digest = hashlib.sha256(var.encode()).hexdigest()[:12]
            return os.path.join(SHARED_LABS_ROOT, "demo", digest, "labs")
        current = os.path.dirname(current)
    return default


#: The demo's own place for labs when the checkout cannot be passed through (see :func:`labs_dir`).
SHARED_LABS_ROOT = "/var/lib/hastexo_xblock"


def make_passable(path: str, top: str = SHARED_LABS_ROOT) -> None:
    """Create ``path`` and make it and every directory from ``top`` down to it 0711.

    The demo runs under umask 077 (its database and secret are its own), so
    directories created for it are 0700, and a lab's user could not pass
    through them to its home: the lab host then fails to start the lab.
    Only the demo's own directories (``top`` and below) are changed.
    """
    os.makedirs(path, exist_ok=True)
    current = os.path.abspath(path)
    top = os.path.abspath(top)
    while current == top or current.startswith(top + os.sep):
        os.chmod(current, 0o711)  # noqa: S103 - passable by the labs' users, listable by no one
        current = os.path.dirname(current)


def run(args: argparse.Namespace) -> int:
    # The database, the secret key, the logs and the broker's files are the demo's alone.
    os.umask(0o077)
    var = os.path.abspath(args.var)
    os.makedirs(var, exist_ok=True)
    labs = os.path.abspath(args.labs) if args.labs else labs_dir(var)
    if labs.startswith(var + os.sep):
        # The labs' users pass through to their homes; nothing here can be listed.
        os.chmod(var, 0o711)  # noqa: S103
    elif labs.startswith(SHARED_LABS_ROOT + os.sep):
        make_passable(labs)
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="hastexo_xblock.demo.settings",
        HASTEXO_DEMO_DIR=var,
        HASTEXO_DEMO_LABS=labs,
        HASTEXO_DEMO_SANDBOX=choose_sandbox(),
        HASTEXO_GATEWAY_PORT=str(args.gateway_port),
        PYTHONUNBUFFERED="1",
    )
    if args.suspend_timeout:
        env["HASTEXO_DEMO_SUSPEND_TIMEOUT"] = str(args.suspend_timeout)
    if args.lab_resize_method:
        env["HASTEXO_DEMO_RESIZE_METHOD"] = args.lab_resize_method
    python = sys.executable
    say("migrating the database")
    subprocess.run([python, "-m", "django", "migrate", "--run-syncdb", "-v", "0"], check=True, env=env, cwd=var)

    commands = {
        "workbench": [
            python,
            "-m",
            "django",
            "runserver",
            f"{args.host}:{args.port}",
            "--noreload",
            "--skip-checks",
            "--insecure",
        ],  # serve static files with DEBUG off (loopback demo only),
        "gateway": [
            python,
            "-m",
            "hastexo_xblock.gateway",  # uvicorn with the gateway's measured settings
            "--host",
            args.host,
            "--port",
            str(args.gateway_port),
            "--log-level",
            "warning",
        ],
        "worker": [
            python,
            "-m",
            "celery",
            "-A",
            "hastexo_xblock.demo.celery",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "8",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        "beat": [
            python,
            "-m",
            "celery",
            "-A",
            "hastexo_xblock.demo.celery",
            "beat",
            "--loglevel",
            "WARNING",
            "--schedule",
            os.path.join(var, "celerybeat-schedule"),
        ],
    }
    logs = os.path.join(var, "logs")
    os.makedirs(logs, exist_ok=True)
    processes: dict[str, subprocess.Popen] = {}
    for name, command in commands.items():
        log_file = open(os.path.join(logs, f"{name}.log"), "ab")  # noqa: SIM115 -- lives as long as the process
        processes[name] = subprocess.Popen(
            command, env=env, cwd=var, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://{args.host}:{args.port}/scenario/{SCENARIO}/"
    desktop_url = f"http://{args.host}:{args.port}/scenario/{DESKTOP_SCENARIO}/"
    readonly_url = f"http://{args.host}:{args.port}/scenario/{READ_ONLY_DESKTOP_SCENARIO}/"
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if not wait_for_http(f"http://{args.host}:{args.gateway_port}/healthz", 60) or not wait_for_http(
            f"http://{args.host}:{args.port}/", 60
        ):
            say(f"a service did not come up; see the logs in {logs}")
            return 1
        print(
            f"\n  hastexo_xblock demo is running.\n\n"
            f'  Open the "Linux basics" lab:  {url}\n'
            f"  (as another learner: {url}?student=alice)\n"
            f'  The "Linux desktop" lab:      {desktop_url}?student=desktop\n'
            f"  (watched only: {readonly_url}?student=desktop; the workbench has one lab per learner,\n"
            f"  so open the desktop as another learner than the terminal)\n\n"
            f"  Labs: {labs}\n"
            f"  Logs: {logs}    Stop: Ctrl-C\n",
            flush=True,
        )
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    say(f"{name} exited with {process.returncode}; see {logs}/{name}.log")
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        say("stopping")
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        # Lab hosts run detached from the worker; stop them too.
        subprocess.run([python, "-m", "django", "hastexo_stop_local_labs"], env=env, cwd=var, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="workbench port (8000)")
    parser.add_argument("--gateway-port", type=int, default=8001, help="gateway port (8001)")
    parser.add_argument("--var", default=os.path.join(PROJECT, "var"), help="state directory (./var)")
    parser.add_argument("--labs", help="where the labs live (var/labs)")
    parser.add_argument("--suspend-timeout", type=int, default=0, help="idle seconds before a lab is suspended")
    parser.add_argument(
        "--lab-resize-method",
        choices=("display-update", "reconnect"),
        help="what a change of the unit's size does to a desktop (display-update)",
    )
    parser.add_argument("--no-venv", action="store_true", help="run with this Python (the project installed)")
    args = parser.parse_args()
    if sys.version_info < (3, 11):  # noqa: UP036 -- this script runs on whatever python3 the user has
        sys.exit("the demo needs Python 3.11 or newer")
    if not args.no_venv and os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        ensure_venv()
        os.execv(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(__file__), *sys.argv[1:]])  # noqa: S606
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
