"""soak_bench's swaps: every few minutes a redeploy to the other model version while the load runs, with
/predict probed every 0.2 s, so each swap can be judged (first answer of the new version, no old answer
after it, no error around it)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request

from benchmarks.harness import PY, REPO, ROW


def _post_one(url: str, key: str, body: bytes) -> tuple[int, str | None]:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "X-API-Key": key})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read()).get("model_version")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None


class Swaps(threading.Thread):
    """Every ``every`` seconds from ``t0`` until ``until``: a swap to the other version (v1 -> v2 -> v1 ...)."""

    def __init__(self, t0: float, every: float, until: float, env: dict, port: int, v1: str, v2: str,
                 deploy_args: list[str], app: str):
        super().__init__(daemon=True, name="soak-swaps")
        self.t0, self.every, self.until, self.env, self.port, self.v1, self.v2 = t0, every, until, env, port, v1, v2
        self.deploy_args, self.app = deploy_args, app
        self.swaps: list[Swap] = []

    def run(self) -> None:
        k, current, other = 1, self.v1, self.v2
        while self.t0 + k * self.every < self.until - 20:  # a swap needs slices after it to be judged
            swap = Swap(self.t0 + k * self.every, self.env, self.port, current, other, self.deploy_args, self.app)
            self.swaps.append(swap)
            swap.run()
            current, other, k = other, current, k + 1


class Swap:
    """At ``at`` (epoch s): ``python -m serve_apps.deploy <deploy_args> serve.model_ref=<v2>``; probe
    /<app>/predict every 0.2 s meanwhile."""

    def __init__(self, at: float, env: dict, port: int, v1: str, v2: str, deploy_args: list[str], app: str):
        self.at, self.env, self.port, self.v1, self.v2 = at, env, port, v1, v2
        self.deploy_args, self.app = deploy_args, app
        self.result: dict = {"from": v1, "to": v2}

    def run(self) -> None:
        time.sleep(max(0.0, self.at - time.time()))
        url = f"http://127.0.0.1:{self.port}/{self.app}/predict"
        body = json.dumps({"rows": [ROW]}).encode()
        probes: list[tuple[float, int, str | None]] = []
        started = time.time()
        proc = subprocess.Popen([PY, "-m", "serve_apps.deploy", *self.deploy_args, f"serve.model_ref={self.v2}"],
                                cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        while proc.poll() is None:
            probes.append((time.time(), *_post_one(url, self.env["FOUNDRY_API_KEY"], body)))
            time.sleep(0.2)
        returned = time.time()
        while time.time() < returned + 5:
            probes.append((time.time(), *_post_one(url, self.env["FOUNDRY_API_KEY"], body)))
            time.sleep(0.2)
        output = proc.stdout.read()
        first_v2 = next((t for t, _, v in probes if v == self.v2), None)
        last_v1 = max((t for t, _, v in probes if v == self.v1), default=None)
        self.result.update(started_at=started, returned_at=returned, returncode=proc.returncode,
                           cli_s=round(returned - started, 2), output=output.strip().splitlines()[-3:],
                           probes=len(probes), probe_errors=sum(1 for _, s, _ in probes if s != 200),
                           first_v2_at=first_v2, last_v1_at=last_v1)
