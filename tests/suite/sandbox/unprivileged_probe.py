"""Run by test_sandbox_verdicts as an ordinary user (uid 65534): what does the sandbox do without root?

Prints one JSON object; exits 3 with the reason when this machine forbids user namespaces.
"""
import json
import sys
import warnings

from suite.sandbox import find_isolation, run_python

FORKS = "import os, time\nfor _ in range(50):\n    if os.fork() == 0:\n        time.sleep(2)\n        os._exit(0)\n"

warnings.simplefilter("error")  # running unsandboxed would be a failure here, not a warning
isolation, why = find_isolation()
if isolation is None:
    print(why, file=sys.stderr)
    sys.exit(3)
print(json.dumps({
    "privileged": isolation.privileged,
    "pass": run_python("pass").reason,
    "exit0": run_python("import os\nos._exit(0)").reason,
    "forks": run_python(FORKS, timeout_s=3).reason,
    "writes": [run_python(f"open({p!r}, 'w')").reason.split(":")[1] for p in ("/x", "/dev/shm/x", "/usr/x")],
    "tmp": run_python("open('/tmp/x', 'w').write('ok')").reason,
}))
