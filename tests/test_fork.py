"""fork(): a child gets its own working service; the parent is unaffected; nothing is lost.

Every scenario runs in a real subprocess (a SIGBUS or a deadlock must fail the test, not kill
or hang pytest) that builds a service, appends, forks — with ``os.fork``, multiprocessing's
``fork`` and ``spawn`` start methods, during heavy appends, and while another thread holds the
journal lock — and prints the ids every process saw acknowledged. The test then drains the
folder with a fresh service and requires each id in the database exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from memory import MemoryService

from .conftest import service_config

SCRIPT = textwrap.dedent(r'''
    import atexit, json, multiprocessing as mp, os, sys, threading, time
    from memory import MemoryService

    if __name__ == "__main__":
        cfg, scenario, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    else:  # a spawn child re-imports this file: only the functions are needed
        out = os.environ["FORK_TEST_OUT"]

    def ack(tag, ids):
        with open(os.path.join(out, f"{tag}-{os.getpid()}.json"), "w") as fh:
            json.dump(ids, fh)

    def append_some(svc, tag, n):
        ids = []
        for i in range(n):
            ev = svc.append_event({"tag": tag, "i": i, "pad": "x" * 50}, "s-" + tag)
            ids.append(ev.event_id)
            t = svc.append_turn("s-" + tag, ev.event_id)
            svc.finish_turn(t.turn_id, status="ok")
            ids.append(t.turn_id)
        return ids

    def child_exit(svc, tag, n):
        """A forked child: append through the inherited service, then exit normally (atexit runs)."""
        ids = append_some(svc, tag, n)
        ack(tag, ids)
        atexit._run_exitfuncs()  # exactly what a normal interpreter exit does
        os._exit(0)

    def mp_target(svc, tag, n, close):
        ids = append_some(svc, tag, n)
        ack(tag, ids)
        if close:
            svc.close()

    def main():
      svc = MemoryService.from_config(cfg)
      parent = append_some(svc, "parent-before", 200)

      if scenario == "os_fork":
          pids = []
          for k in range(3):
              pid = os.fork()
              if pid == 0:
                  child_exit(svc, f"child{k}", 300)
              pids.append(pid)
          parent += append_some(svc, "parent-during", 300)
          codes = [os.waitpid(p, 0)[1] for p in pids]
          parent += append_some(svc, "parent-after", 300)  # SIGBUS here if a child truncated our segment
      elif scenario in ("mp_fork", "mp_spawn"):
          ctx = mp.get_context("fork" if scenario == "mp_fork" else "spawn")
          procs = [ctx.Process(target=mp_target, args=(svc, f"mp{k}", 250, k % 2 == 0)) for k in range(4)]
          for p in procs:
              p.start()
          parent += append_some(svc, "parent-during", 300)
          for p in procs:
              p.join(120)
          codes = [p.exitcode for p in procs]
          parent += append_some(svc, "parent-after", 300)
      elif scenario == "heavy":
          stop = threading.Event()
          heavy = []

          def hammer():
              while not stop.is_set():
                  heavy.extend(append_some(svc, "hammer", 20))

          threads = [threading.Thread(target=hammer) for _ in range(2)]
          for t in threads:
              t.start()
          pids = []
          for k in range(8):
              time.sleep(0.02)
              pid = os.fork()
              if pid == 0:
                  child_exit(svc, f"heavy{k}", 100)
              pids.append(pid)
          codes = [os.waitpid(p, 0)[1] for p in pids]
          stop.set()
          for t in threads:
              t.join()
          parent += heavy
      elif scenario == "lock_held":
          # Another thread holds the journal lock at the moment of the fork: the child must not
          # inherit a lock nobody will ever release.
          held, release = threading.Event(), threading.Event()

          def holder():
              with svc.queue.journal.lock:
                  held.set()
                  release.wait()

          t = threading.Thread(target=holder)
          t.start()
          held.wait()
          pid = os.fork()
          if pid == 0:
              child_exit(svc, "locked-child", 100)
          release.set()
          t.join()
          codes = [os.waitpid(pid, 0)[1]]
          parent += append_some(svc, "parent-after", 100)
      else:
          raise SystemExit("unknown scenario " + scenario)

      ok = svc.flush(60)
      problems = svc.check()
      svc.close()
      ack("parent", parent)
      print(json.dumps({"codes": codes, "flushed": ok, "problems": problems}))

    if __name__ == "__main__":
        main()
''')


def run_scenario(dsn: str, root: Path, scenario: str) -> tuple[dict[str, object], list[str]]:
    cfg = service_config(dsn, root, max_dump_file_size_mb=0.05)
    out = root / "acks"
    out.mkdir()
    script = root / "forkscript.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, FORK_TEST_OUT=str(out))
    proc = subprocess.run([sys.executable, str(script), json.dumps(cfg), scenario, str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"parent died ({proc.returncode}): {proc.stderr[-3000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    ids: list[str] = []
    for f in sorted(out.glob("*.json")):
        ids += json.loads(f.read_text())
    return result, ids


@pytest.mark.parametrize("scenario", ["os_fork", "mp_fork", "mp_spawn", "heavy", "lock_held"])
def test_fork_children_get_their_own_service(scenario: str, dsn: str, tmp_path: Path) -> None:
    result, ids = run_scenario(dsn, tmp_path, scenario)
    assert result["codes"] and all(c == 0 for c in result["codes"]), result  # no child crashed or hung
    assert result["flushed"] and result["problems"] == [], result
    assert len(ids) == len(set(ids)), "two processes handed out the same id"
    # Children that exited without close() (multiprocessing's fork children end with
    # os._exit) left their records in their own slot: the next service to start adopts them.
    with MemoryService.from_config(service_config(dsn, tmp_path, max_dump_file_size_mb=0.05)) as drain:
        assert drain.flush(60), drain.health()
        assert drain.check() == []
        events = drain.store.existing_ids("events", ids)
        turns = drain.store.existing_ids("turns", ids)
        assert len(events) + len(turns) == len(ids), "an acknowledged record is missing"
        assert drain.store.count("events") + drain.store.count("turns") == len(ids)  # each exactly once
        done = drain.store.execute("SELECT COUNT(*) FROM turns WHERE status = 'ok'")[0][0]
        assert done == len(turns)  # every finish landed too
    leftovers = [p for p in (tmp_path / "queue").rglob("seg-*.log")]
    assert leftovers == [], leftovers
