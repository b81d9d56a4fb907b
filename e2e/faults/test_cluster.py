"""A three-node Apache Kafka cluster (KRaft, every node broker and controller,
replication factor 3, min.insync.replicas 2; the services produce with acks=all and
idempotence) under customers' product changes.

Given the whole system on the cluster under load, when the broker leading the busiest
partition of the change topic is SIGKILLed and later started again, or all three are
restarted one at a time, then every accepted change ends COMPLETED or FAILED exactly
once, per-line order holds on every topic, KOS, the command side and the read side
agree on every line, and new changes go through again within 15 s.

Starts its own cluster (infra/local/kafka.sh) on PHONEBILL_FAULTS_CLUSTER_PORT (default
19592) and the next two ports, controllers 1000 above.
"""

import base64
import os
import re
import shutil
import subprocess
import time
import unittest
import uuid

from harness import BUILD, ROOT, TARGET, Load, Stack, assert_exactly_once, wait_until

KAFKA = os.path.join(ROOT, "infra", "local", "kafka.sh")
BASE = int(os.environ.get("PHONEBILL_FAULTS_CLUSTER_PORT", "19592"))
PORTS = [BASE, BASE + 1, BASE + 2]
VOTERS = ",".join(f"{n + 1}@127.0.0.1:{p + 1000}" for n, p in enumerate(PORTS))
BROKERS = ",".join(f"127.0.0.1:{p}" for p in PORTS)
FAILOVER_SECONDS = 15


def kafka(*args, check=True):
    return subprocess.run([KAFKA, *args], check=check, capture_output=True, text=True).stdout


class Cluster:
    def __init__(self):
        self.dir = os.path.join(ROOT, ".run", "faults", "cluster")
        shutil.rmtree(self.dir, ignore_errors=True)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.env = dict(os.environ, PHONEBILL_KAFKA_CLUSTER_ID=cluster_id,
                        PHONEBILL_KAFKA_HEAP="-Xms128m -Xmx384m")

    def node_dir(self, node):
        return os.path.join(self.dir, f"node{node}")

    def start(self, node):
        subprocess.run([KAFKA, "start", self.node_dir(node), str(PORTS[node - 1]), str(node), VOTERS],
                       check=True, env=self.env, capture_output=True, text=True)

    def start_all(self):
        # The nodes wait for each other's quorum: start them side by side.
        procs = [subprocess.Popen([KAFKA, "start", self.node_dir(n), str(PORTS[n - 1]), str(n), VOTERS],
                                  env=self.env) for n in (1, 2, 3)]
        for p in procs:
            assert p.wait() == 0, "a cluster node did not start"

    def kill(self, node):
        kafka("kill", self.node_dir(node))

    def stop(self, node):
        kafka("stop", self.node_dir(node))

    def stop_all(self):
        for node in (1, 2, 3):
            kafka("stop", self.node_dir(node), check=False)

    def describe(self, topic):
        """partition -> (leader, in-sync replicas)."""
        out = kafka("topics", BROKERS, "--describe", "--topic", topic)
        found = {}
        for m in re.finditer(r"Partition: (\d+)\s+Leader: (-?\d+)\s+Replicas: [\d,]+\s+Isr: ([\d,]*)", out):
            found[int(m.group(1))] = (int(m.group(2)), [int(x) for x in m.group(3).split(",") if x])
        return found

    def fully_replicated(self, topic):
        d = self.describe(topic)
        return bool(d) and all(len(isr) == 3 and leader > 0 for leader, isr in d.values())


class ThreeBrokerCluster(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()
        cls.cluster.start_all()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.stop_all()

    def setUp(self):
        self.stack = Stack(BROKERS).up()
        self.addCleanup(self.stack.down)
        self.topic = f"{self.stack.id}.phonebill.product-change"
        wait_until("the change topic fully replicated", 60, lambda: self.cluster.fully_replicated(self.topic))
        self.load = Load(self.stack, self.stack.lines[:80]).start()
        self.probes = iter(self.stack.lines[80:])
        wait_until("the load under way", 60, lambda: self.load.count() >= 30)

    def check_order_and_exactly_once(self):
        accepted = self.load.stop()
        self.assertEqual(self.load.errors, [])
        assert_exactly_once(self, self.stack, accepted)
        for topic in ("phonebill.product-change", "kos.product-change-results", "kos.billing"):
            out = subprocess.run([os.path.join(TARGET, BUILD, "topic-order"), "--brokers", BROKERS,
                                  "--topic", f"{self.stack.id}.{topic}"], capture_output=True, text=True)
            print(out.stdout.strip())
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            # The relay publishes each event once; KOS answers every delivery of a request
            # (consumers keep the first), so only the change topic must have no repeats.
            if topic == "phonebill.product-change":
                self.assertIn(" duplicates=0", out.stdout)
        return accepted

    def test_the_leader_of_the_busiest_partition_killed_and_restarted_loses_nothing_and_changes_resume_within_15_s(self):
        partitions = self.cluster.describe(self.topic)
        busiest = self.busiest(partitions)
        leader = partitions[busiest][0]
        accepted_before = self.load.count()
        self.cluster.kill(leader)
        killed = time.monotonic()
        _, taken = self.stack.change_and_wait(next(self.probes), FAILOVER_SECONDS)
        print(f"\nkilled broker {leader} (leader of partition {busiest}) with {accepted_before} changes"
              f" accepted; a new change COMPLETED and visible {time.monotonic() - killed:.1f} s later")
        self.cluster.start(leader)
        wait_until("the restarted broker back in sync", 120, lambda: self.cluster.fully_replicated(self.topic))
        _, taken = self.stack.change_and_wait(next(self.probes), FAILOVER_SECONDS)
        self.assertLessEqual(taken, FAILOVER_SECONDS)
        wait_until("more changes after the restart", 60, lambda: self.load.count() >= accepted_before + 20)
        self.check_order_and_exactly_once()

    def test_a_rolling_restart_of_all_three_brokers_loses_nothing_and_changes_go_through_within_15_s(self):
        slowest = 0.0
        for node in (1, 2, 3):
            self.cluster.stop(node)
            _, taken = self.stack.change_and_wait(next(self.probes), FAILOVER_SECONDS)
            slowest = max(slowest, taken)
            self.cluster.start(node)
            wait_until(f"broker {node} back in sync", 120, lambda: self.cluster.fully_replicated(self.topic))
        print(f"\nrolling restart of 3 brokers: the slowest change during it took {slowest:.1f} s")
        self.check_order_and_exactly_once()

    def busiest(self, partitions):
        """The change topic's partition with the most records (end offsets)."""
        out = kafka("offsets", BROKERS, "--topic", self.topic)
        ends = {}
        for line in out.splitlines():
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit():
                ends[int(parts[1])] = int(parts[2])
        return max(ends or {p: 0 for p in partitions}, key=lambda p: ends.get(p, 0))


if __name__ == "__main__":
    unittest.main()
