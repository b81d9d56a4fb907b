"""One product change is one trace, across every service and the broker.

Given the whole system exporting traces to a Jaeger of the test's own (OTLP in, its
query API out), when a customer requests a product change with a W3C `traceparent`,
then Jaeger holds one trace with that id in which the spans follow the change's path,
each the descendant of the one before: command-service's HTTP span, its relay's publish,
kos-mock's consume, kos-mock's publish of the answer, command-service's KOS inbox
consume, its relay's publish of the outcome, and the projector's apply of it. A change
whose caller did not sample its trace (`traceparent` flags 00) leaves no span in any
service: the decision travels with it.

Needs PHONEBILL_TEST_KAFKA_BROKERS, the services' binaries and Jaeger's
(infra/local/stack test builds them). Run alone: python3 -m unittest -v test_traces
"""

import os
import shutil
import subprocess
import tempfile
import unittest
import uuid

from harness import ROOT, Stack, free_port, http, psql, wait_until

BROKERS = os.environ.get("PHONEBILL_TEST_KAFKA_BROKERS", "127.0.0.1:9092")
JAEGER = os.path.join(ROOT, "infra", "local", "jaeger.sh")


class Jaeger:
    """A Jaeger of its own: OTLP/HTTP receiver and query API on free loopback ports."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="phonebill-jaeger-")
        self.otlp, self.grpc, self.ui = free_port(), free_port(), free_port()
        subprocess.run(["bash", JAEGER, "start", self.dir, str(self.otlp), str(self.grpc),
                        str(self.ui)], check=True)

    def stop(self):
        subprocess.run(["bash", JAEGER, "stop", self.dir], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def trace(self, trace_id):
        """The trace's spans as (span id, parent span id, service, operation, kind)."""
        status, body = http("GET", f"http://127.0.0.1:{self.ui}/api/traces/{trace_id}", timeout=5)
        data = (body or {}).get("data") or [] if status == 200 else []
        spans = []
        for trace in data:
            for span in trace["spans"]:
                parents = [r["spanID"] for r in span.get("references", [])
                           if r["refType"] == "CHILD_OF"]
                tags = {t["key"]: t["value"] for t in span.get("tags", [])}
                spans.append((span["spanID"], parents[0] if parents else None,
                              trace["processes"][span["processID"]]["serviceName"],
                              span["operationName"], tags.get("span.kind")))
        return spans


def descends(spans, path):
    """Whether some chain of spans, each a descendant of the one before, matches `path`,
    a list of (service, operation suffix) in order."""
    by_id = {s[0]: s for s in spans}

    def ancestors(span):
        seen = set()
        while span[1] in by_id and span[1] not in seen:
            seen.add(span[1])
            span = by_id[span[1]]
            yield span

    def matches(span, step):
        return span[2] == step[0] and span[3].endswith(step[1])

    def chain_ends_at(span, steps):
        if not matches(span, steps[-1]):
            return False
        if len(steps) == 1:
            return True
        return any(chain_ends_at(a, steps[:-1]) for a in ancestors(span))

    return any(chain_ends_at(s, path) for s in spans)


class OneTracePerChange(unittest.TestCase):
    def setUp(self):
        self.jaeger = Jaeger()
        self.addCleanup(self.jaeger.stop)
        self.stack = Stack(BROKERS, extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.jaeger.otlp}",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            # Spans leave within 100 ms instead of the default 5 s.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }).up()
        self.addCleanup(self.stack.down)

    def change(self, line, flags):
        """Requests a change of `line` in a new trace whose sampled flag is `flags`; waits
        for it to complete and returns the trace id."""
        stack = self.stack
        current, target = wait_until(f"an offer for {line}", 30, lambda: stack.offer(line))
        trace_id = uuid.uuid4().hex
        traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-{flags}"
        status, body = http("POST", f"{stack.url('command-service')}/api/v1/product-changes",
                            {"lineNumber": line, "currentProductCode": current,
                             "targetProductCode": target},
                            token=stack.token,
                            headers={"Idempotency-Key": str(uuid.uuid4()),
                                     "traceparent": traceparent})
        self.assertEqual(status, 202, body)
        request_id = body["requestId"]
        wait_until(f"change {request_id} COMPLETED", 60,
                   lambda: stack.status(request_id) == "COMPLETED")
        return trace_id

    def test_a_change_is_one_trace_from_the_request_through_kos_to_the_projection_and_an_unsampled_one_leaves_none(self):
        stack = self.stack
        unsampled = self.change(stack.lines[1], "00")
        trace_id = self.change(stack.lines[0], "01")

        topic = f"{stack.id}.phonebill.product-change"
        results = f"{stack.id}.kos.product-change-results"
        path = [
            ("command-service", "POST /api/v1/product-changes"),
            ("command-service", f"{topic} publish"),
            ("kos-mock", f"{topic} process"),
            ("kos-mock", f"{results} publish"),
            ("command-service", f"{results} process"),
            ("command-service", f"{topic} publish"),
            ("projector", f"{topic} apply"),
        ]
        spans = wait_until("the change's whole path in one trace", 30,
                           lambda: (lambda s: s if descends(s, path) else None)(
                               self.jaeger.trace(trace_id)), every=0.5)

        services = {s[2] for s in spans}
        self.assertTrue({"command-service", "kos-mock", "projector"} <= services, services)
        kinds = {(s[2], s[4]) for s in spans}
        for expected in [("command-service", "server"), ("command-service", "producer"),
                         ("kos-mock", "consumer"), ("kos-mock", "producer"),
                         ("command-service", "consumer")]:
            self.assertIn(expected, kinds)

        # The unsampled change went the same way first; its spans would have been
        # exported by now, as the sampled change's were.
        self.assertEqual(self.jaeger.trace(unsampled), [],
                         "a change whose caller did not sample it leaves no span")
        # and its decision went with it: the events of its request and of KOS's answer
        # (through kos-mock) are stored in its trace, the sampled flag off.
        flags = [r[0] for r in psql(
            f"SELECT split_part(metadata->>'traceparent', '-', 4) FROM {stack.id}_command.events"
            f" WHERE split_part(metadata->>'traceparent', '-', 2) = '{unsampled}'")]
        self.assertGreaterEqual(len(flags), 2, "the request's event and the answer's")
        self.assertEqual(set(flags), {"00"})


if __name__ == "__main__":
    unittest.main()
