"""A client process for the many-viewers test: N concurrent SSE viewers of one job's log.

Usage: python -m tests.e2e.viewers_client API TOKEN WORKFLOW_ID JOB_ID N

Each viewer reads the stream until `end` and checks its own lines (ids strictly increasing, no
duplicate). Prints one JSON object: how many viewers ended, the lines each saw, and failures.
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx


async def view(client: httpx.AsyncClient, url: str) -> tuple[bool, int, str | None]:
    seqs: list[int] = []
    event = ""
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            return False, 0, f"status {response.status_code}: {(await response.aread())[:200]!r}"
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and event == "log":
                seqs.append(json.loads(line.partition(":")[2])["seq"])
            elif line.startswith("data:") and event == "end":
                if seqs != sorted(set(seqs)):
                    return True, len(seqs), "lines out of order or repeated"
                return True, len(seqs), None
    return False, len(seqs), "the stream closed before `end`"


async def main(api: str, token: str, workflow_id: str, job_id: str, n: int) -> None:
    url = f"/workflows/{workflow_id}/jobs/{job_id}/logs/stream"
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(
        base_url=api,
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(120, connect=30),
        limits=limits,
    ) as client:
        results = await asyncio.gather(
            *(view(client, url) for _ in range(n)), return_exceptions=True
        )
    ended, lines, failures = 0, [], []
    for result in results:
        if isinstance(result, BaseException):
            failures.append(repr(result))
            continue
        done, count, failure = result
        ended += done
        lines.append(count)
        if failure:
            failures.append(failure)
    print(json.dumps({"ended": ended, "lines": lines, "failures": failures[:10]}))


if __name__ == "__main__":
    api, token, workflow_id, job_id, n = sys.argv[1:6]
    asyncio.run(main(api, token, workflow_id, job_id, int(n)))
