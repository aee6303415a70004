"""Many live viewers of one job's log: client processes holding concurrent SSE streams.

One process (``python -m bench.viewers API TOKEN WORKFLOW_ID JOB_ID N [SAMPLED]``) runs N viewers
on one event loop. Each reads the stream until `end` and checks its own lines as it goes: attempt
1, seqs 0, 1, 2, ... with no gap and no duplicate, up to the end's `last_seq`. The first SAMPLED
viewers also note each line's delivery latency: the time it was read here minus its `ts` (when
the execution worker read it from the container). Parsing is kept cheap (the `id:` field only)
because the clients share the machine with the server they measure.

The process prints `ready <n>` once every viewer has read its first line (or failed), then, when
all are over, one JSON object (:class:`ViewersReport`). :class:`ViewerProcesses` starts a few of
them and collects their reports; the bench's `viewers` scenario and tests/e2e use it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from bench.environment import ROOT, BenchError

MAX_FAILURES = 10


@dataclass(frozen=True, kw_only=True)
class ViewersReport:
    """What a set of viewers saw. ``latencies``: (epoch seconds read, ms) of sampled lines."""

    viewers: int
    ended: int  # read the `end` event
    complete: int  # ...after every line of the attempt, in order, once, and not incomplete
    lines: tuple[int, ...]  # lines each viewer read
    failures: tuple[str, ...]
    latencies: tuple[tuple[float, float], ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ViewersReport:
        return cls(
            viewers=int(data["viewers"]),
            ended=int(data["ended"]),
            complete=int(data["complete"]),
            lines=tuple(data["lines"]),
            failures=tuple(data["failures"]),
            latencies=tuple((float(t), float(ms)) for t, ms in data["latencies"]),
        )

    @classmethod
    def merge(cls, reports: list[ViewersReport]) -> ViewersReport:
        return cls(
            viewers=sum(r.viewers for r in reports),
            ended=sum(r.ended for r in reports),
            complete=sum(r.complete for r in reports),
            lines=tuple(n for r in reports for n in r.lines),
            failures=tuple(f for r in reports for f in r.failures)[:MAX_FAILURES],
            latencies=tuple(sorted(x for r in reports for x in r.latencies)),
        )


@dataclass(kw_only=True)
class _Viewer:
    sampled: bool
    next_seq: int = 0
    lines: int = 0
    in_order: bool = True
    ended: bool = False
    complete: bool = False
    failure: str | None = None
    latencies: list[tuple[float, float]] = field(default_factory=list)

    def take(self, event: str, event_id: str, data: str) -> None:
        if event == "log":
            attempt, _, seq = event_id.partition(".")
            if attempt != "1" or int(seq) != self.next_seq:
                self.in_order = False
            self.next_seq = int(seq) + 1
            self.lines += 1
            if self.sampled:
                now = time.time()
                ts = datetime.fromisoformat(json.loads(data)["ts"]).timestamp()
                self.latencies.append((now, (now - ts) * 1000))
        elif event == "end":
            end = json.loads(data)
            self.ended = True
            self.complete = (
                self.in_order
                and end["attempt"] == 1
                and end["last_seq"] + 1 == self.next_seq
                and not end["incomplete"]
            )
            if not self.complete:
                self.failure = f"lines out of order, missing or repeated: {self.lines} read, {end}"


async def _view(client: httpx.AsyncClient, url: str, viewer: _Viewer, first: asyncio.Event) -> None:
    try:
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                body = (await response.aread())[:200]
                viewer.failure = f"status {response.status_code}: {body!r}"
                return
            event, event_id, data = "", "", ""
            async for line in response.aiter_lines():
                if line:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        event = value
                    elif name == "id":
                        event_id = value
                    elif name == "data":
                        data = value
                    continue
                if event:  # a blank line ends an event (a keep-alive comment has none)
                    viewer.take(event, event_id, data)
                    first.set()
                    if viewer.ended:
                        return
                event, event_id, data = "", "", ""
        viewer.failure = "the stream closed before `end`"
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        viewer.failure = repr(exc)
    finally:
        first.set()


async def view_all(
    api: str, token: str, workflow_id: str, job_id: str, n: int, sampled: int
) -> ViewersReport:
    """Run ``n`` viewers of the job until each is over; print `ready` once each read a line."""
    url = f"/workflows/{workflow_id}/jobs/{job_id}/logs/stream"
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    viewers = [_Viewer(sampled=i < sampled) for i in range(n)]
    firsts = [asyncio.Event() for _ in range(n)]
    async with httpx.AsyncClient(
        base_url=api,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(300, connect=60),
        limits=limits,
    ) as client:
        tasks = [
            asyncio.create_task(_view(client, url, viewer, first))
            for viewer, first in zip(viewers, firsts, strict=True)
        ]
        await asyncio.gather(*(first.wait() for first in firsts))
        sys.stdout.write(f"ready {sum(v.lines > 0 for v in viewers)}\n")
        sys.stdout.flush()
        await asyncio.gather(*tasks)
    return ViewersReport(
        viewers=n,
        ended=sum(v.ended for v in viewers),
        complete=sum(v.complete for v in viewers),
        lines=tuple(v.lines for v in viewers),
        failures=tuple(v.failure for v in viewers if v.failure)[:MAX_FAILURES],
        latencies=tuple(x for v in viewers for x in v.latencies),
    )


class ViewerProcesses:
    """``viewers`` viewers of one job, split over ``processes`` client processes."""

    def __init__(
        self,
        api: str,
        token: str,
        workflow_id: str,
        job_id: str,
        *,
        viewers: int,
        processes: int,
        sampled: int = 0,
    ) -> None:
        shares = [viewers // processes + (i < viewers % processes) for i in range(processes)]
        self._processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.viewers",
                    api,
                    token,
                    workflow_id,
                    job_id,
                    str(share),
                    str(sampled),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for share in shares
            if share
        ]
        self._ready: list[int | None] = [None] * len(self._processes)
        self._reports: list[ViewersReport | None] = [None] * len(self._processes)
        self._readers = [
            threading.Thread(target=self._read, args=(i,), daemon=True)
            for i in range(len(self._processes))
        ]
        for reader in self._readers:
            reader.start()

    def __enter__(self) -> ViewerProcesses:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _read(self, i: int) -> None:
        stdout = self._processes[i].stdout
        assert stdout is not None
        for line in stdout:
            if line.startswith("ready "):
                self._ready[i] = int(line.split()[1])
            elif line.startswith("{"):
                self._reports[i] = ViewersReport.from_json(json.loads(line))

    def running(self) -> bool:
        return all(p.poll() is None for p in self._processes)

    def wait_ready(self, timeout_s: float) -> int:
        """Wait until every viewer has read a line (or failed); how many read one."""
        deadline = time.monotonic() + timeout_s
        while any(r is None for r in self._ready):
            exited = [p for p in self._processes if p.poll() is not None]
            if exited:
                raise BenchError(f"a viewer client exited with {exited[0].returncode}")
            if time.monotonic() > deadline:
                raise BenchError(f"the viewers were not all connected after {timeout_s:.0f}s")
            time.sleep(0.05)
        return sum(r or 0 for r in self._ready)

    def report(self, timeout_s: float) -> ViewersReport:
        """Wait until every viewer is over; their merged report."""
        for process, reader in zip(self._processes, self._readers, strict=True):
            process.wait(timeout=timeout_s)
            reader.join(timeout=5)
            if process.returncode != 0:
                raise BenchError(f"a viewer client exited with {process.returncode}")
        if any(r is None for r in self._reports):
            raise BenchError("a viewer client printed no report")
        return ViewersReport.merge([r for r in self._reports if r is not None])

    def close(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


def main(argv: list[str]) -> None:
    api, token, workflow_id, job_id, n, *rest = argv
    sampled = int(rest[0]) if rest else 0
    report = asyncio.run(view_all(api, token, workflow_id, job_id, int(n), sampled))
    sys.stdout.write(json.dumps(asdict(report)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
