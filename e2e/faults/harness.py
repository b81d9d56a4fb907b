"""The whole system as real processes, for fault tests: kos-mock (demo data), command-
service, projector and query-service, each a child process that can be SIGKILLed and
started again, in a namespace of their own (schemas, topic prefix, Redis key prefix,
consumer groups, query role) on a broker given by PHONEBILL_TEST_KAFKA_BROKERS.

Only the standard library: HTTP through urllib, the databases through psql.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("PHONEBILL_CACHE", os.path.expanduser("~/.cache/phonebill"))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(CACHE, "target"))
BUILD = os.environ.get("PHONEBILL_FAULTS_BUILD", "debug")
PG = os.environ.get("PHONEBILL_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/phonebill")
REDIS = os.environ.get("PHONEBILL_TEST_REDIS_URL", "redis://127.0.0.1:6379")
TERMINAL = ("COMPLETED", "FAILED")
# The analyst tools (replay, compare), run with the projector's settings.
ANALYST = "phonebill-analyst"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, seconds, check, every=0.05):
    """Polls `check` until it returns something truthy; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        time.sleep(every)


def psql(sql):
    out = subprocess.run(["psql", PG, "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


def http(method, url, body=None, token=None, headers=None, timeout=10):
    """(status, parsed body); status 0 when nothing answered."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        request.add_header(k, v)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw) if raw else None
        except ValueError:
            return e.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout):
        return 0, None


class Stack:
    SERVICES = ("kos-mock", "command-service", "projector", "query-service")

    def __init__(self, brokers, kos_latency_ms=(20, 60), extra_env=None):
        self.id = "flt" + uuid.uuid4().hex[:10]
        self.brokers = brokers
        self.ports = {name: free_port() for name in self.SERVICES}
        self.role = f"{self.id}_q"
        self.procs = {}
        self.logs = {}
        self.log_dir = os.path.join(ROOT, ".run", "faults", self.id)
        os.makedirs(self.log_dir, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({
            "PHONEBILL_DATABASE_URL": PG,
            "PHONEBILL_KAFKA_BROKERS": brokers,
            "PHONEBILL_TOPIC_PREFIX": f"{self.id}.",
            "PHONEBILL_TOPIC_PARTITIONS": "6",
            "PHONEBILL_REDIS_URL": REDIS,
            "PHONEBILL_REDIS_KEY_PREFIX": f"{self.id}:",
            "PHONEBILL_KOS_SUCCESS_RATE": "1.0",
            "PHONEBILL_KOS_LATENCY_MIN_MS": str(kos_latency_ms[0]),
            "PHONEBILL_KOS_LATENCY_MAX_MS": str(kos_latency_ms[1]),
            "PHONEBILL_KOS_RANDOM_SEED": "7",
            "PHONEBILL_ARGON2_MEMORY_KIB": "1024",
            "PHONEBILL_ARGON2_ITERATIONS": "1",
            "PHONEBILL_RATE_LIMIT_PER_IP_PER_MINUTE": "0",
            "PHONEBILL_RATE_LIMIT_PER_CUSTOMER_PER_MINUTE": "0",
            "PHONEBILL_RELAY_POLL_INTERVAL_MS": "20",
            "PHONEBILL_KOS_PUBLISH_POLL_MS": "20",
            "PHONEBILL_QUERY_ROLE": self.role,
            "PHONEBILL_QUERY_ROLE_LOGIN": "true",
            "PHONEBILL_EVENT_STORE_SCHEMA": f"{self.id}_command",
            "RUST_LOG": "warn",
        })
        self.env.update(extra_env or {})
        # Production's membership is dynamic (a clean stop leaves the group, a crashed
        # member is dropped after the 6 s session); PHONEBILL_FAULTS_STATIC_MEMBERSHIP=1
        # runs the same tests with static members named as pods would be.
        self.static = os.environ.get("PHONEBILL_FAULTS_STATIC_MEMBERSHIP") == "1"
        self.own = {
            "kos-mock": {"PHONEBILL_DATABASE_SCHEMA": f"{self.id}_kos",
                         "PHONEBILL_KOS_CONSUMER_GROUP": f"{self.id}.kos"},
            "command-service": {"PHONEBILL_DATABASE_SCHEMA": f"{self.id}_command",
                                "PHONEBILL_KOS_CONSUMER_GROUP": f"{self.id}.command"},
            "projector": {"PHONEBILL_DATABASE_SCHEMA": f"{self.id}_read",
                          "PHONEBILL_CONSUMER_GROUP": f"{self.id}.projector"},
            "query-service": {"PHONEBILL_DATABASE_SCHEMA": f"{self.id}_read",
                              "PHONEBILL_DATABASE_URL": PG.replace("postgres@", f"{self.role}@", 1)},
        }

    # ------------------------------------------------------------------ processes

    def binary(self, name):
        return os.path.join(TARGET, BUILD, name)

    def run_once(self, name, *args, binary=None):
        """Runs `binary` (default: the service's own) once with the service's settings."""
        env = dict(self.env, **self.own[name])
        subprocess.run([self.binary(binary or name), *args], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def run_capture(self, name, *args, binary=None):
        env = dict(self.env, **self.own[name])
        return subprocess.run([self.binary(binary or name), *args], env=env, capture_output=True,
                              text=True)

    def url(self, name):
        return f"http://127.0.0.1:{self.ports[name]}"

    def spawn(self, name, replica=0):
        """Starts a service (replica > 0: another instance on its own port)."""
        key = name if replica == 0 else f"{name}#{replica}"
        env = dict(self.env, **self.own[name])
        port = self.ports[name] if replica == 0 else self.ports.setdefault(key, free_port())
        env["PHONEBILL_HTTP_ADDR"] = f"127.0.0.1:{port}"
        if self.static:
            env["PHONEBILL_KAFKA_INSTANCE_ID"] = f"{self.id}-{key.replace('#', '-')}"
        if key in self.logs:
            self.logs.pop(key).close()
        log = open(os.path.join(self.log_dir, f"{key}.log"), "ab")
        self.procs[key] = subprocess.Popen([self.binary(name)], env=env, stdout=log,
                                           stderr=subprocess.STDOUT)
        self.logs[key] = log
        return key, port

    def start(self, name, replica=0, seconds=60):
        key, port = self.spawn(name, replica)
        wait_until(f"{key} ready", seconds,
                   lambda: http("GET", f"http://127.0.0.1:{port}/health/ready")[0] == 200)
        return key

    def kill(self, key):
        """SIGKILL: no shutdown work at all."""
        proc = self.procs.pop(key)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self, key):
        """SIGTERM, as Kubernetes stops a pod; waits for the process to exit."""
        proc = self.procs.pop(key)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def up(self):
        """Demo data, the four services, passwords; returns once the demo lines are
        known on both sides."""
        self.run_once("kos-mock", "seed-demo")
        self.start("kos-mock")
        self.start("command-service")
        wait_until("command-service's reference data", 120,
                   lambda: int(psql(f"SELECT count(*) FROM {self.id}_command.ref_lines")[0][0]) >= 100)
        self.run_once("command-service", "seed-demo-passwords")
        self.start("projector")
        self.start("query-service")
        wait_until("the read model of the demo lines", 120,
                   lambda: int(psql(f"SELECT count(*) FROM {self.id}_read.lines")[0][0]) >= 100)
        status, body = http("POST", f"{self.url('command-service')}/api/v1/auth/login",
                            {"customerId": "admin", "password": "demo-admin"})
        assert status == 200, f"admin login: {status} {body}"
        self.token = body["accessToken"]
        self.lines = sorted(r[0] for r in psql(f"SELECT line_number FROM {self.id}_command.ref_lines"))
        return self

    def down(self):
        for key in list(self.procs):
            self.stop(key)
        for log in self.logs.values():
            log.close()
        self.logs.clear()
        if shutil.which("redis-cli"):
            subprocess.run(f"redis-cli -u {REDIS} --scan --pattern '{self.id}:*' | xargs -r -n 500 redis-cli -u {REDIS} unlink",
                           shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        schemas = [r[0] for r in psql(f"SELECT nspname FROM pg_namespace WHERE nspname LIKE '{self.id}\\_%'")]
        role = psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{self.role}'")
        psql("; ".join([f"DROP SCHEMA IF EXISTS {name} CASCADE" for name in schemas]
                       + ([f"DROP OWNED BY {self.role}", f"DROP ROLE {self.role}"] if role else [])))

    # ------------------------------------------------------------------ customers' API

    def query(self, path):
        return http("GET", f"{self.url('query-service')}{path}", token=self.token)

    def offer(self, line):
        """(current product, another product the line may change to), from query-service."""
        status, body = self.query(f"/api/v1/products/available?lineNumber={line}")
        if status != 200:
            return None
        others = [p["productCode"] for p in body["availableProducts"]]
        return (body["currentProduct"]["productCode"], others[0]) if others else None

    def request_change(self, line, current, target, key):
        """POST with an Idempotency-Key, repeated until some instance answers: (status, body)."""
        return wait_until(f"an answer to the change of {line}", 120, lambda: (
            lambda r: r if r[0] != 0 and r[0] < 500 else None)(
            http("POST", f"{self.url('command-service')}/api/v1/product-changes",
                 {"lineNumber": line, "currentProductCode": current, "targetProductCode": target},
                 token=self.token, headers={"Idempotency-Key": key})), every=0.1)

    def status(self, request_id):
        status, body = self.query(f"/api/v1/product-changes/{request_id}")
        return body.get("status") if status == 200 and body else None

    def change_and_wait(self, line, seconds):
        """One change on `line`, then waits until query-service shows it COMPLETED and the
        line's summary shows the new product. Returns (request id, seconds taken)."""
        started = time.monotonic()
        current, target = wait_until(f"an offer for {line}", seconds, lambda: self.offer(line))
        status, body = self.request_change(line, current, target, str(uuid.uuid4()))
        assert status == 202, f"change of {line}: {status} {body}"
        request_id = body["requestId"]
        remaining = seconds - (time.monotonic() - started)
        wait_until(f"change {request_id} COMPLETED and visible", max(remaining, 0.1), lambda: (
            self.status(request_id) == "COMPLETED"
            and (self.query(f"/api/v1/lines/{line}")[1] or {}).get("currentProduct", {}).get("productCode") == target))
        return request_id, time.monotonic() - started

    # ------------------------------------------------------------------ what the system recorded

    def terminal_events(self):
        """request id -> how many terminal events (COMPLETED or FAILED) the event store holds."""
        rows = psql(f"""SELECT payload::jsonb -> event_type ->> 'request_id', count(*)
                          FROM {self.id}_command.events
                         WHERE event_type IN ('ProductChangeCompleted', 'ProductChangeFailed')
                         GROUP BY 1""")
        return {r[0]: int(r[1]) for r in rows}

    def views_equal_a_rebuild(self):
        """Rebuilds every view from the broker's topics into namespace `rebuilt`
        (`phonebill-analyst replay --source broker`, with the projector's settings) and
        compares it with the live views (`phonebill-analyst compare`) until they are equal;
        fails after 60 s with the last report."""
        self.run_once("projector", "replay", "--id", "rebuilt", "--source", "broker", "--quiet",
                      binary=ANALYST)
        last = {}

        def equal():
            out = self.run_capture("projector", "compare", "rebuilt", binary=ANALYST)
            last["report"] = out.stdout.strip() or out.stderr.strip()[-2000:]
            return out.returncode == 0
        try:
            wait_until("the live views equal a rebuild", 60, equal, every=0.5)
        except AssertionError as e:
            raise AssertionError(f"{e}: {last.get('report')}") from None
        return last["report"]

    def kos_executions(self):
        rows = psql(f"SELECT request_id, count(*) FROM {self.id}_kos.line_product_history"
                    f" WHERE request_id IS NOT NULL GROUP BY 1")
        return {r[0]: int(r[1]) for r in rows}

    def products_everywhere(self):
        """line -> (KOS's product, the command side's reference product, the read side's)."""
        kos = dict(psql(f"SELECT line_number, product_code FROM {self.id}_kos.lines"))
        ref = dict(psql(f"SELECT line_number, product_code FROM {self.id}_command.ref_lines"))
        read = {}
        for line in self.lines:
            status, body = self.query(f"/api/v1/lines/{line}")
            read[line] = body.get("currentProduct", {}).get("productCode") if status == 200 else None
        return {line: (kos.get(line), ref.get(line), read.get(line)) for line in self.lines}


class Load:
    """`workers` customers' loops, each changing its own lines one change at a time and
    following each change to its end (COMPLETED or FAILED on query-service), until
    stopped. Every accepted request id is kept."""

    def __init__(self, stack, lines, workers=6):
        self.stack = stack
        self.accepted = {}  # request id -> line
        self.waits = []  # seconds from each change's 202 to its end on query-service
        self.errors = []
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        shares = [lines[i::workers] for i in range(workers)]
        self.threads = [threading.Thread(target=self.loop, args=(share,), daemon=True) for share in shares]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def loop(self, lines):
        i = 0
        while not self.stopped.is_set():
            line = lines[i % len(lines)]
            i += 1
            try:
                offer = wait_until(f"an offer for {line}", 120, lambda: self.stack.offer(line), every=0.1)
                status, body = self.stack.request_change(line, *offer, key=str(uuid.uuid4()))
                if status != 202:
                    continue  # e.g. the read side had not caught up with the last change yet
                accepted_at = time.monotonic()
                with self.lock:
                    self.accepted[body["requestId"]] = line
                wait_until(f"change {body['requestId']} settled", 120,
                           lambda: self.stack.status(body["requestId"]) in TERMINAL, every=0.05)
                with self.lock:
                    self.waits.append(time.monotonic() - accepted_at)
            except AssertionError as e:
                self.errors.append(str(e))

    def count(self):
        with self.lock:
            return len(self.accepted)

    def stop(self):
        self.stopped.set()
        for t in self.threads:
            t.join(timeout=180)
        return dict(self.accepted)


def assert_exactly_once(test, stack, accepted):
    """Every accepted change ended COMPLETED or FAILED exactly once, KOS executed each
    completed one exactly once, KOS, the command side and the read side agree on every
    line's product, and the live views equal a rebuild from the topics."""
    wait_until("every accepted change settled", 120,
               lambda: all(stack.status(r) in TERMINAL for r in accepted))
    events = stack.terminal_events()
    executions = stack.kos_executions()
    test.assertEqual([r for r in accepted if events.get(r, 0) != 1], [],
                     "accepted changes without exactly one terminal event")
    test.assertEqual({r: n for r, n in executions.items() if n != 1}, {},
                     "changes KOS executed more than once")
    completed = [r for r in accepted if stack.status(r) == "COMPLETED"]
    test.assertEqual([r for r in completed if executions.get(r) != 1], [],
                     "completed changes KOS did not execute")
    agree = wait_until("KOS, the command side and the read side agree", 60, lambda: (
        lambda p: p if all(k == c == r for k, c, r in p.values()) else None)(stack.products_everywhere()))
    test.assertTrue(agree)
    report = json.loads(stack.views_equal_a_rebuild())
    print(f"views equal a rebuild from the topics: {report['comparison']['compared']} rows and views compared")
