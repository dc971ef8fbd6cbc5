"""Incoming-call webhooks per second and latency percentiles: our `/twilio/voice/incoming` (signature
check, a sealed dedup row group-committed with the calls arriving together, the language menu)
against a bare FastAPI endpoint that parses the same form and returns static TwiML — side by side
in one run.

    apt-get install wrk                                     # the load generator (Debian package)
    python bench/webhooks.py                                # embedded SQLite default, 1 worker
    python bench/webhooks.py --database-url postgresql://postgres@127.0.0.1:5432/test --workers 1
    python bench/webhooks.py --database-url postgresql://postgres@127.0.0.1:5432/test --workers 2

Every request is a unique, correctly signed Twilio webhook (a fresh CallSid), pre-generated and
cycled through by wrk's Lua script. The servers run on core 0 and wrk on core 1 (`taskset`); with
2 workers the server uses both cores and shares them with wrk (reported as such). A PostgreSQL
URL names a server: a fresh database is created on it for the run and dropped afterwards.
Targets on the embedded default: throughput ≥ 0.5× the bare endpoint, p99 ≤ 3× the bare p99.
Ctrl-C stops the servers and removes the temporary files.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crypto.keyfile import create_key_file  # noqa: E402
from telephony.signature import sign  # noqa: E402

TOKEN = "bench-auth-token-0123456789abcdef"
ACCOUNT = "AC" + "0" * 32
LUA = """
local lines = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do lines[#lines + 1] = line end
end
function request()
  i = i % #lines + 1
  local sig, body = lines[i]:match("([^\\t]+)\\t(.*)")
  return wrk.format("POST", "/twilio/voice/incoming",
    {["Content-Type"] = "application/x-www-form-urlencoded", ["X-Twilio-Signature"] = sig}, body)
end
"""
BARE_APP = """
from fastapi import FastAPI, Request
from fastapi.responses import Response
from telephony.payloads import IncomingCall, parse_form

app = FastAPI()
TWIML = ('<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="http://x/l" numDigits="1">'
         '<Say>For English, press 1.</Say></Gather></Response>')

@app.post("/twilio/voice/incoming")
async def incoming(request: Request) -> Response:
    form = await request.form()
    parse_form(IncomingCall, form)
    return Response(TWIML, media_type="application/xml")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited ({process.returncode}); see its log")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not come up")


def requests_file(directory: Path, public_url: str, count: int) -> Path:
    path = directory / "requests.tsv"
    url = f"{public_url}/twilio/voice/incoming"
    with path.open("w") as out:
        for n in range(count):
            params = {
                "CallSid": "CA" + uuid.uuid4().hex,
                "AccountSid": ACCOUNT,
                "From": f"+1202555{n % 10000:04d}",
                "To": "+12125550199",
                "CallStatus": "ringing",
                "Direction": "inbound",
                "ApiVersion": "2010-04-01",
            }
            out.write(f"{sign(url, params, TOKEN)}\t{urlencode(params)}\n")
    return path


def run_wrk(
    port: int, script: Path, data: Path, seconds: int, connections: int, cores: str
) -> dict[str, float]:
    command = [
        "taskset", "-c", cores, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
        "-s", str(script), f"http://127.0.0.1:{port}", "--", str(data),
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        found = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", output)
        if found:
            value, unit = float(found.group(1)), found.group(2)
            result[f"p{pct}"] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result["errors"] = float(errors.group(1)) if errors else 0.0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", help="postgresql://… server (a fresh database is made); default SQLite"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--requests", type=int, default=60000, help="pre-signed unique requests to cycle")
    args = parser.parse_args()
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    pg_admin = None
    database_name = None
    try:
        port, bare_port = free_port(), free_port()
        public_url = f"http://127.0.0.1:{port}"
        if args.database_url:
            import psycopg

            database_name = f"bench_{uuid.uuid4().hex[:10]}"
            pg_admin = psycopg.connect(args.database_url, autocommit=True)
            pg_admin.execute(f'CREATE DATABASE "{database_name}"')
            base = args.database_url.rsplit("/", 1)[0]
            database_url = f"{base}/{database_name}"
        else:
            database_url = f"sqlite:///{work}/hotline.db"
        create_key_file(work / "keys.json")
        env = {
            **os.environ,
            "HOTLINE_DATABASE_URL": database_url,
            "HOTLINE_KEYRING_FILE": str(work / "keys.json"),
            "HOTLINE_PUBLIC_URL": public_url,
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "HOTLINE_TWILIO_NUMBER": "+12125550199",
            "HOTLINE_OVERFLOW_NUMBER": "+12125550100",
            "HOTLINE_LOG_LEVEL": "WARNING",
            "HOTLINE_SPOOL_DIR": str(work / "spool"),
            "PYTHONPATH": str(ROOT),
        }
        print(f"preparing {args.requests} signed unique requests…", flush=True)
        data = requests_file(work, public_url, args.requests)
        script = work / "cycle.lua"
        script.write_text(LUA)
        (work / "bare_app.py").write_text(BARE_APP)
        if args.database_url:
            subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], env=env, cwd=work, check=True)
        server_cores = "0" if args.workers == 1 else "0,1"
        log = (work / "server.log").open("wb")
        ours = subprocess.Popen(
            ["taskset", "-c", server_cores, sys.executable, "-m", "app.cli", "serve", "--port", str(port),
             "--workers", str(args.workers)],
            env=env, cwd=work, stdout=log, stderr=log,
        )  # fmt: skip
        processes.append(ours)
        bare = subprocess.Popen(
            ["taskset", "-c", server_cores, sys.executable, "-m", "uvicorn", "bare_app:app", "--port",
             str(bare_port), "--workers", str(args.workers), "--log-level", "warning", "--no-access-log"],
            env={**env, "PYTHONPATH": f"{work}:{ROOT}"}, cwd=work, stdout=log, stderr=log,
        )  # fmt: skip
        processes.append(bare)
        wait_ready(f"{public_url}/healthz", ours)
        wait_ready(f"http://127.0.0.1:{bare_port}/docs", bare)
        print(f"servers up ({args.workers} worker(s) each, cores {server_cores}); wrk on core 1", flush=True)
        results = {}
        for name, target in (("bare", bare_port), ("ours", port), ("bare (again)", bare_port)):
            print(f"  {name}: {args.seconds} s, {args.connections} connections…", flush=True)
            results[name] = run_wrk(target, script, data, args.seconds, args.connections, "1")
        bare_rps = (results["bare"]["rps"] + results["bare (again)"]["rps"]) / 2
        bare_p99 = (results["bare"]["p99"] + results["bare (again)"]["p99"]) / 2
        db = "PostgreSQL" if args.database_url else "SQLite (embedded)"
        print(f"\n{db}, {args.workers} worker(s)")
        print("| endpoint | req/s | p50 ms | p90 ms | p99 ms | non-2xx |")
        print("|---|---|---|---|---|---|")
        for name, r in results.items():
            print(
                f"| {name} | {r['rps']:.0f} | {r.get('p50', 0):.1f} | {r.get('p90', 0):.1f} | "
                f"{r.get('p99', 0):.1f} | {r['errors']:.0f} |"
            )
        ours_r = results["ours"]
        print(
            f"\nthroughput ours/bare = {ours_r['rps'] / bare_rps:.2f} (target ≥ 0.5); "
            f"p99 ours/bare = {ours_r['p99'] / bare_p99:.2f} (target ≤ 3)"
        )
    except KeyboardInterrupt:
        print("\ninterrupted: stopping", flush=True)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        if pg_admin is not None and database_name is not None:
            pg_admin.execute(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)')
            pg_admin.close()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
