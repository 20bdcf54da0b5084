#!/usr/bin/python3
"""worker_driver.py: run a workspace's test targets through one `nestbox worker`.

    worker_driver.py [--nestbox BIN] [--cache DIR] [-j N] [WORKSPACE] [TARGET...]

What a build tool does with nestbox's persistent worker (Bazel's JSON worker protocol),
in a page of standard-library Python: `nestbox actions` prints the actions, one worker
process gets one multiplexed WorkRequest per action (`--action-json` and the action),
and each WorkResponse carries the result JSON (nestbox.result/v1) or a one-line error.

Prints one line per target as its response arrives, like
    project1/tests  PASSED  (cached)
and exits 0 when every target passed, 1 when any failed or timed out, 2 when nestbox
refused an input, 3 on an infrastructure error (the worst code wins, 3 > 2 > 1 > 4).
"""
import argparse
import json
import subprocess
import sys
import threading

SEVERITY = [0, 4, 1, 2, 3]  # exit codes from best to worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nestbox", default="nestbox", help="the nestbox binary (default: on PATH)")
    ap.add_argument("--cache", help="the cache directory (default: nestbox's own)")
    ap.add_argument("-j", type=int, default=2, help="requests the worker runs at once (default 2)")
    ap.add_argument("workspace", nargs="?", default=".")
    ap.add_argument("targets", nargs="*")
    args = ap.parse_args()

    p = subprocess.run([args.nestbox, "actions", args.workspace, *args.targets],
                       stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        return p.returncode  # nestbox printed why
    actions = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    if not actions:
        print("worker_driver: no targets", file=sys.stderr)
        return 2

    cmd = [args.nestbox, "worker", "-j", str(args.j), "--persistent_worker"]
    if args.cache:
        cmd[2:2] = ["--cache", args.cache]
    worker = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def feed():  # a thread, so that a full pipe never stops us reading responses
        for rid, action in enumerate(actions, start=1):
            request = {"arguments": ["--action-json", json.dumps(action)], "requestId": rid}
            worker.stdin.write(json.dumps(request) + "\n")
            worker.stdin.flush()
        worker.stdin.close()  # EOF: the worker finishes what it has and exits

    threading.Thread(target=feed, daemon=True).start()

    worst, answered = 0, set()
    for line in worker.stdout:
        response = json.loads(line)
        rid, code = response.get("requestId", 0), response.get("exitCode", 0)
        output = response.get("output", "")
        target = actions[rid - 1]["target"] if 1 <= rid <= len(actions) else f"request {rid}"
        answered.add(rid)
        try:
            result = json.loads(output)
        except ValueError:
            result = None
        if isinstance(result, dict) and "status" in result:
            print(f"{result['target']}  {result['status']}" + ("  (cached)" if result.get("cached") else ""))
        else:
            print(f"{target}  ERROR  {output.strip()}")
        if SEVERITY.index(code if code in SEVERITY else 3) > SEVERITY.index(worst):
            worst = code if code in SEVERITY else 3
        sys.stdout.flush()

    status = worker.wait()
    missing = set(range(1, len(actions) + 1)) - answered
    if status != 0 or missing:
        print(f"worker_driver: the worker exited with {status}"
              + (f", {len(missing)} requests unanswered" if missing else ""), file=sys.stderr)
        return 3
    return worst


if __name__ == "__main__":
    sys.exit(main())
