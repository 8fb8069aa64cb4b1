"""A command for the timeout test: a child, a grandchild and a daemon that left the process group, all
ignoring SIGTERM (the disposition is inherited), their pids written to $PIDS_DIR/<name>.json; then waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
CHILD = ("import subprocess, time; g = subprocess.Popen(['sleep', '300']); print(g.pid, flush=True); "
         "time.sleep(300)")
child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE)
assert child.stdout is not None
grandchild = int(child.stdout.readline())
daemon = subprocess.Popen(["sleep", "300"], start_new_session=True, stdout=subprocess.DEVNULL)
path = os.path.join(os.environ["PIDS_DIR"], sys.argv[1] + ".json")
with open(path + ".tmp", "w") as f:
    json.dump({"command": os.getpid(), "child": child.pid, "grandchild": grandchild, "daemon": daemon.pid}, f)
os.replace(path + ".tmp", path)
print("tree ready", flush=True)
time.sleep(300)
