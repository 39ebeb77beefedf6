#!/usr/bin/env python3
"""Generates jmx_kafka.prom: a deterministic ~200 KB body in the style of the Prometheus JMX
exporter (jmx_prometheus_javaagent) on a Kafka broker: HELP/TYPE for every family, Java
Double.toString values (`1.2345E7`, `0.0`, `NaN`), a trailing comma in every label set.

Run from this folder: python3 gen_jmx.py; it prints the sample count the test expects."""
import random

random.seed(20261128)
TOPICS = ["orders", "payments", "inventory", "clickstream", "audit-log", "user.events",
          "__consumer_offsets", "shipments", "notifications", "metrics_raw"]
PARTITIONS = 12
QUANTILES = ["0.50", "0.75", "0.95", "0.98", "0.99", "0.999"]
REQUESTS = ["Produce", "FetchConsumer", "FetchFollower", "Metadata", "OffsetCommit",
            "JoinGroup", "Heartbeat", "ListOffsets"]


def jdouble(v):
    """Java's Double.toString for the values used here."""
    if v != v:
        return "NaN"
    if v == 0:
        return "0.0"
    a = abs(v)
    if 1e-3 <= a < 1e7:
        s = repr(float(v))
        return s if "e" not in s else s
    m, e = f"{v:.6E}".split("E")
    m = m.rstrip("0")
    if m.endswith("."):
        m += "0"
    return f"{m}E{int(e)}"


out = []
count = 0


def family(name, help_text, kind="untyped"):
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")


def sample(name, labels, value):
    global count
    count += 1
    if labels:
        body = "".join(f'{k}="{v}",' for k, v in labels)
        out.append(f"{name}{{{body}}} {jdouble(value)}")
    else:
        out.append(f"{name} {jdouble(value)}")


def attr(mbean):
    return f"Attribute exposed for management ({mbean})"


family("jmx_config_reload_success_total", "Number of times configuration have successfully been reloaded.", "counter")
sample("jmx_config_reload_success_total", [], 0.0)
family("jmx_scrape_duration_seconds", "Time this JMX scrape took, in seconds.", "gauge")
sample("jmx_scrape_duration_seconds", [], 0.183)
family("jmx_scrape_error", "Non-zero if this scrape failed.", "gauge")
sample("jmx_scrape_error", [], 0.0)
family("jvm_memory_bytes_used", "Used bytes of a given JVM memory area.", "gauge")
for area in ["heap", "nonheap"]:
    sample("jvm_memory_bytes_used", [("area", area)], random.uniform(1e7, 4e9))
family("jvm_memory_pool_bytes_used", "Used bytes of a given JVM memory pool.", "gauge")
for pool in ["CodeHeap 'non-nmethods'", "Metaspace", "CodeHeap 'profiled nmethods'",
             "Compressed Class Space", "G1 Eden Space", "G1 Old Gen", "G1 Survivor Space"]:
    sample("jvm_memory_pool_bytes_used", [("pool", pool)], random.uniform(1e5, 2e9))
family("jvm_gc_collection_seconds", "Time spent in a given JVM garbage collector in seconds.", "summary")
for gc in ["G1 Young Generation", "G1 Old Generation"]:
    sample("jvm_gc_collection_seconds_count", [("gc", gc)], float(random.randint(0, 90000)))
    sample("jvm_gc_collection_seconds_sum", [("gc", gc)], random.uniform(0, 900))
family("jvm_threads_current", "Current thread count of a JVM", "gauge")
sample("jvm_threads_current", [], 187.0)

for m in ["bytesinpersec", "bytesoutpersec", "messagesinpersec", "totalproducerequestspersec",
          "totalfetchrequestspersec", "failedproducerequestspersec"]:
    name = f"kafka_server_brokertopicmetrics_{m}"
    family(name, attr(f"kafka.server<type=BrokerTopicMetrics, name={m}><>Count"))
    sample(name, [], random.uniform(1e6, 1e12))
    for t in TOPICS:
        sample(name, [("topic", t)], random.uniform(1e3, 1e10))
    for rate in ["OneMinuteRate", "FiveMinuteRate", "FifteenMinuteRate", "MeanRate"]:
        rname = f"{name}_{rate.lower()}"
        family(rname, attr(f"kafka.server<type=BrokerTopicMetrics, name={m}><>{rate}"))
        for t in TOPICS:
            sample(rname, [("topic", t)], random.choice([random.uniform(0, 5e6), 0.0]))

for r in REQUESTS:
    for m in ["totaltimems", "requestqueuetimems", "localtimems", "remotetimems",
              "responsequeuetimems", "responsesendtimems"]:
        name = f"kafka_network_requestmetrics_{m}"
        if r == REQUESTS[0]:
            family(name, attr(f"kafka.network<type=RequestMetrics, name={m}, request={r}><>Percentile"))
        for q in QUANTILES:
            sample(name, [("request", r), ("quantile", q)], random.choice([float(random.randint(0, 500)), random.uniform(0, 2e3)]))
        sample(f"{name}_count", [("request", r)], float(random.randint(0, 10**9)))

for m in ["size", "numlogsegments", "logstartoffset", "logendoffset"]:
    name = f"kafka_log_log_{m}"
    family(name, attr(f"kafka.log<type=Log, name={m}, topic=..., partition=...><>Value"))
    for t in TOPICS:
        for p in range(PARTITIONS):
            sample(name, [("topic", t), ("partition", str(p))], float(random.randint(0, 10**11)))

for m in ["underreplicated", "insyncreplicascount", "replicascount", "underminisr", "lastwstableoffsetlag"]:
    name = f"kafka_cluster_partition_{m}"
    family(name, attr(f"kafka.cluster<type=Partition, name={m}, topic=..., partition=...><>Value"))
    for t in TOPICS:
        for p in range(PARTITIONS):
            sample(name, [("topic", t), ("partition", str(p))], float(random.randint(0, 3)))

name = "kafka_server_fetcherlagmetrics_consumerlag"
family(name, attr("kafka.server<type=FetcherLagMetrics, name=ConsumerLag, clientId=..., topic=..., partition=...><>Value"))
for fetcher in range(3):
    for t in TOPICS:
        for p in range(PARTITIONS):
            sample(name, [("clientId", f"ReplicaFetcherThread-{fetcher}-{random.randint(1, 5)}"), ("topic", t), ("partition", str(p))], float(random.randint(0, 50000)))

for m in ["producerequestratemetrics", "fetchrequestratemetrics"]:
    name = f"kafka_server_{m}_requestqueuesize"
    family(name, attr(f"kafka.server<type={m}><>Value"))
    sample(name, [], float("nan"))

body = "\n".join(out) + "\n"
with open("jmx_kafka.prom", "w") as f:
    f.write(body)
print(f"{len(body)} bytes, {count} samples")
