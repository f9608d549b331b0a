"""bench/peak_rss.py: run a command in a fresh wrapper process and report its peak RSS (the
wrapper's RUSAGE_CHILDREN peak is exactly that command's), for the benchmark drivers."""
import subprocess
import sys

WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print('RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
           "sys.exit(r.returncode)")


def child(cmd, env):
    """Run cmd; return its stdout and its peak RSS in MiB (exit with its output if it fails)."""
    r = subprocess.run([sys.executable, "-c", WRAPPER] + cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}")
    rss = [l for l in r.stderr.splitlines() if l.startswith("RSS_KIB")][-1]
    return r.stdout, int(rss.split()[1]) / 1024.0
