"""Every operation of the ``foundry`` command: its name, the ``python -m`` module it runs and one line of help.

Data only: the targets are named as strings (``module:function``) and imported when their command runs.
A command with a two-word name (``monitor status``) belongs to a group (``foundry monitor``); ``prefix``
is put in front of the user's arguments (``monitor status`` is ``python -m jobs.monitor --status``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str  # "train", or "group sub"
    module: str  # the `python -m` form it stands for
    target: str  # "package.module:function", called with the argument list
    summary: str
    operations: str = ""  # the target's own subcommands, shown after the name: "list|show|promote|gc"
    prefix: tuple[str, ...] = ()
    # The module's `__main__` wraps its main in `foundry.console.entry.run_or_exit`; the command does the same.
    run_or_exit: bool = False
    # False: the target parses no options (only overrides); the console answers --help for it.
    own_help: bool = True
    # The module's `__main__` ends through `foundry.console.entry.exit_when_done` (a job's process ends when its
    # work is done, without the interpreter's teardown: Ray's atexit alone is 2-3 s); the command ends the same way.
    fast_exit: bool = False

    @property
    def group(self) -> str:
        return self.name.split()[0]

    @property
    def python_m(self) -> str:
        return " ".join(["python -m", self.module, *self.prefix])


COMMANDS: tuple[Command, ...] = (
    Command("cluster", "cluster", "cluster.__main__:main",
            "the local Ray head (status: 1 if down); render: AWS/GCP/KubeRay files",
            operations="up|down|status|render"),
    Command("train", "jobs.train", "jobs.train:main",
            "data -> Ray Train -> evaluate -> register, promote if better", fast_exit=True),
    Command("tune", "jobs.tune", "jobs.tune:main",
            "Ray Tune + ASHA search (tune=asha by default), register the best", fast_exit=True),
    Command("pipeline", "jobs.pipeline", "jobs.pipeline:main",
            "train (or tune), register, deploy Serve, start the monitor: one job", fast_exit=True),
    Command("serve deploy", "serve_apps.deploy", "serve_apps.deploy:main",
            "deploy or re-point the Serve app (--write FILE: its config as YAML)", fast_exit=True),
    Command("serve delete", "serve_apps.deploy", "serve_apps.deploy:main",
            "remove the Serve application (other applications stay)", prefix=("--delete",), fast_exit=True),
    Command("serve standalone", "foundry.serving.standalone", "foundry.serving.standalone:main",
            "the same HTTP app in one uvicorn process, without Ray"),
    Command("serve key-digest", "foundry.serving.auth", "foundry.serving.auth:main",
            "salted digests of $FOUNDRY_API_KEY (for FOUNDRY_API_KEY_SHA256)"),
    Command("monitor start", "jobs.monitor", "jobs.monitor:main",
            "start (or find) the model's drift monitor, a detached actor", fast_exit=True),
    Command("monitor status", "jobs.monitor", "jobs.monitor:main",
            "the monitor's phase, episode and counters, as JSON", prefix=("--status",), fast_exit=True),
    Command("monitor stop", "jobs.monitor", "jobs.monitor:main",
            "kill the monitor (its state stays for a restart)", prefix=("--stop",), fast_exit=True),
    Command("replay", "jobs.replay", "jobs.replay:main",
            "the monitor's decisions over your rows, offline, without Ray", fast_exit=True),
    Command("registry", "foundry.registry", "foundry.registry.cli:main",
            "model versions, manifests, aliases; clean up after crashed writers",
            operations="list|show|promote|gc"),
    Command("events", "foundry.ops.events", "foundry.ops.events:main",
            "a model's self-healing history: drift, jobs, promotions, roll-outs"),
    Command("status", "foundry.ops.status", "foundry.ops.status:main",
            "nodes, Serve apps, actors, jobs, models and the monitor at a glance", run_or_exit=True),
    Command("datasets", "foundry.datasets", "foundry.datasets.__main__:main",
            "write a bundled data set or a drift scenario of it to a file"),
    Command("maintenance", "foundry.ops.maintenance", "foundry.ops.maintenance:main",
            "one compaction and retention pass over a model's storage"),
    Command("demo", "cluster.demo", "cluster.demo:main",
            "the whole loop on the bundled data, with a report (make demo)",
            run_or_exit=True, own_help=False),
)

# Groups that have no module of their own: the line `foundry --help` shows for them.
GROUPS: dict[str, str] = {
    "serve": "the Serve application",
    "monitor": "the drift monitor of a served model",
}
