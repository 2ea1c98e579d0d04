"""Turns a capture of capture_proxy.py into a fixture of
sqreen-server/tests/agent_fixtures.rs:

    python3 make_fixtures.py CAPTURE.jsonl AGENT OUT.json

The fixture is the list of what the agent sent, in order: method, path,
the credential it used (`api-key`, `session` or none), its User-Agent and
its body. Consecutive identical exchanges (idle heartbeats) are kept once,
the answers are dropped (the test checks its own), and local paths and
command lines are replaced by neutral ones.
"""
import json
import sys

capture, agent, out = sys.argv[1], sys.argv[2], sys.argv[3]
LOCAL = [("/work/wt16", "/srv/repo"), ("/work/main", "/srv/repo"), ("/tmp/sq16", "/srv/agents"),
         ("/root", "/home/app")]
DROPPED_KEYS = {"ppid_cmdline", "process_limits", "heap_stats", "cwd", "agent_path",
                "libsqreen_install_artifacts", "libsqreen_runtime_artifacts"}


def clean(value):
    if isinstance(value, dict):
        return {k: ("<removed>" if k in DROPPED_KEYS else clean(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, str):
        for old, new in LOCAL:
            value = value.replace(old, new)
    return value


exchanges = []
for line in open(capture):
    d = json.loads(line)
    ex = {"method": d["method"], "path": d["path"], "credential": d["credential"],
          "user_agent": d["headers"].get("user-agent", ""), "body": clean(d["body"])}
    if exchanges and exchanges[-1] == ex:
        continue
    exchanges.append(ex)
json.dump({"agent": agent, "exchanges": exchanges}, open(out, "w"), indent=1, sort_keys=True)
print("{}: {} exchanges".format(out, len(exchanges)))
