#!/usr/bin/env python3
"""Writes the full Kafka JMX body (~6,000 series) from tests/data/expo/jmx_kafka.prom
(~2,100 series): every sample with a `topic` label is repeated under topics named
TOPIC-c1, TOPIC-c2, ... right after the original (families stay contiguous), until the
body holds TARGET samples. Usage: gen_body.py IN OUT [TARGET=6000]"""
import re
import sys

src, dst = sys.argv[1], sys.argv[2]
target = int(sys.argv[3]) if len(sys.argv) > 3 else 6000
lines = open(src, encoding="utf-8").read().splitlines()
samples = [l for l in lines if l and not l.startswith("#")]
topical = [l for l in samples if 'topic="' in l]
extra = target - len(samples)
if extra < 0 or not topical:
    sys.exit("nothing to multiply")
copies, rest = divmod(extra, len(topical))
out, seen = [], 0
for l in lines:
    out.append(l)
    if l.startswith("#") or 'topic="' not in l:
        continue
    n = copies + (1 if seen < rest else 0)
    seen += 1
    for c in range(1, n + 1):
        out.append(re.sub(r'topic="([^"]*)"', lambda m: f'topic="{m.group(1)}-c{c}"', l, count=1))
open(dst, "w", encoding="utf-8").write("\n".join(out) + "\n")
print(sum(1 for l in out if l and not l.startswith("#")), "samples,", len("\n".join(out)) + 1, "bytes")
