"""Gateway benchmarks against its peers, all in one run on one machine.

Three ways to reach the same shell on the same OpenSSH ``sshd`` (started here
with its own configuration, host key and free port on 127.0.0.1)::

    direct:   asyncssh client ─────────────────────────────────ssh──▶ sshd ──pty──▶ bash
    webssh:   websocket client ──ws──▶ webssh (tornado+paramiko) ──ssh──▶ sshd
    gateway:  websocket client ──ws──▶ uvicorn + gateway.asgi ──────ssh──▶ sshd

Each server runs in its own process, so its CPU time and memory are its own
(``psutil``).  The clients run in the benchmark's process.  The full sweep also
measures echo through a second gateway started with ``--workers 2`` (one worker
per core, as the README recommends for this 2-core machine).

* :mod:`.rig` starts and stops the servers;
* :mod:`.clients` opens sessions of each kind and measures echo, bulk output,
  idle memory and a stalled reader;
* :mod:`.sweep` runs the full comparison (``make gateway-benchmarks``) and
  writes ``$HASTEXO_TEST_OUTPUT/benchmarks/gateway-sweep.json``;
  ``tests/test_benchmarks.py`` runs a reduced one in the suite.
"""
