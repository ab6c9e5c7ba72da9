"""``foundry [command] [args...]``: parse the command word(s), then hand the rest of the line to the target.

The arguments after the command go to the target's ``main`` unchanged (options, ``--config-dir``,
``--from-version`` and Hydra ``key=value`` overrides), so the configuration is composed, and the exit code
chosen, exactly as ``python -m <module>`` does. Only the command words are parsed here: an unknown one exits 2
with a message, as any other usage error. ``foundry --help`` imports nothing beyond this package and
``foundry.errors``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Sequence

from foundry import errors
from foundry.console.commands import COMMANDS, GROUPS, Command

PROG = "foundry"
HELP = ("-h", "--help")
USAGE_ERROR = 2  # argparse's, and ConfigError's: a command line that cannot run
# What each exit code means, in the words of every command's epilog (foundry.config.sources.EPILOG). A code
# of foundry/errors.py missing here is described by its first error class's docstring.
MEANINGS: dict[int, str] = {
    0: "done",
    1: "anything else",
    2: "bad configuration or command line",
    3: "bad data",
    4: "registry problem",
    5: "Serve or the monitor failed",
}
# Errors with an exit code that are defined beside the code that raises them, not in foundry/errors.py
# (tests/unit/test_console.py finds every one in the tree and fails when it is missing here).
EXIT_CODES_ELSEWHERE: dict[int, tuple[str, ...]] = {
    5: ("ServeControlError", "MonitorStartError"),  # foundry/serving/control.py, jobs/pipeline.py
}


def exit_codes() -> dict[int, tuple[str, list[str]]]:
    """Exit code -> (meaning, what exits with it): the error classes of ``foundry/errors.py`` by their
    ``exit_code``, then ``EXIT_CODES_ELSEWHERE``."""
    codes: dict[int, tuple[str, list[str]]] = {0: (MEANINGS[0], [])}
    for obj in vars(errors).values():
        if inspect.isclass(obj) and issubclass(obj, errors.FoundryError) and obj.__module__ == errors.__name__:
            meaning = MEANINGS.get(obj.exit_code) or _first_sentence(obj.__doc__)
            codes.setdefault(obj.exit_code, (meaning, []))[1].append(obj.__name__)
    for code, names in EXIT_CODES_ELSEWHERE.items():
        codes.setdefault(code, (MEANINGS.get(code, ""), []))[1].extend(names)
    codes[USAGE_ERROR][1].append("usage errors")
    codes[1][1].append("unexpected errors (with a traceback)")
    return dict(sorted(codes.items()))


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").split()).replace("``", "")
    return text.split(". ")[0].rstrip(".")


def exit_codes_text() -> str:
    rows = [(f"{code}  {meaning}", ", ".join(names)) for code, (meaning, names) in exit_codes().items()]
    return "\n".join(["exit codes (from foundry/errors.py; the same for every command):", *_table(rows)])


def _label(cmd: Command) -> str:
    return f"{cmd.name} {cmd.operations}".strip()


def _table(rows: Sequence[tuple[str, str]], indent: str = "  ") -> list[str]:
    width = max(len(left) for left, _ in rows) + 2
    return [f"{indent}{left:<{width}}{right}".rstrip() for left, right in rows]


def help_text() -> str:
    rows = [(_label(c), f"{c.summary}  [{c.module}{''.join(' ' + p for p in c.prefix)}]") for c in COMMANDS]
    return "\n".join([
        f"usage: {PROG} <command> [options] [key=value ...]",
        "",
        "Foundry: a self-healing ML platform on Ray. Each command is `python -m <the module in brackets>`,",
        "with the same options, configuration and exit codes: --config-dir DIR, --config-name NAME,",
        "--from-version MODEL[@REF] and Hydra key=value overrides compose the config as everywhere else.",
        "Jobs on a cluster run the modules themselves: ray job submit -- python -m jobs.train ...",
        "",
        "commands:",
        *_table(rows),
        "",
        f"`{PROG} <command> --help` shows a command's options.",
        "",
        exit_codes_text(),
    ])


def group_help(group: str, members: Sequence[Command]) -> str:
    return "\n".join([
        f"usage: {PROG} {group} {{{','.join(c.name.split()[1] for c in members)}}} [options] [key=value ...]",
        "",
        f"{GROUPS.get(group, group)}:",
        *_table([(c.name.split()[1], f"{c.summary}  [{c.python_m}]") for c in members]),
        "",
        f"`{PROG} {group} <command> --help` shows a command's options.",
    ])


def _usage_error(message: str, usage: str) -> int:
    print(f"{usage}\n{PROG}: error: {message}", file=sys.stderr)
    return USAGE_ERROR


def _resolve(target: str) -> Callable[[list[str]], int]:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def run(cmd: Command, argv: list[str]) -> int:
    """Run ``cmd`` with the rest of the command line, as ``python -m <module>`` would."""
    if any(a in HELP for a in argv):
        if not cmd.own_help:
            print(f"usage: {PROG} {cmd.name} [key=value ...]\n\n{cmd.summary}. The same as `{cmd.python_m}`.\n\n"
                  f"{(importlib.import_module(cmd.module).__doc__ or '').strip()}\n\n{exit_codes_text()}")
            return 0
        print(f"`{PROG} {cmd.name}` runs `{cmd.python_m}`; its options:\n", flush=True)
    function = _resolve(cmd.target)
    args = [*cmd.prefix, *argv]
    if cmd.run_or_exit:
        from foundry.console.entry import run_or_exit

        return run_or_exit(lambda: function(args))
    return function(args)


def pick(argv: Sequence[str]) -> tuple[Command, list[str]] | None:
    """The command a line names and the rest of the line; None when it names none (``main`` answers those
    lines with help or a usage error)."""
    if not argv:
        return None
    word, rest = argv[0], list(argv[1:])
    members = [c for c in COMMANDS if c.group == word]
    if len(members) == 1 and members[0].name == word:
        return members[0], rest
    return next(((c, rest[1:]) for c in members if rest and c.name.split()[1:] == rest[:1]), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if picked := pick(argv):
        return run(*picked)
    usage = f"usage: {PROG} <command> [options] [key=value ...]  (`{PROG} --help` lists the commands)"
    if not argv:
        return _usage_error("a command is required", usage)
    if argv[0] in HELP:
        print(help_text())
        return 0
    word, rest = argv[0], argv[1:]
    members = [c for c in COMMANDS if c.group == word]
    if not members:
        names = ", ".join(dict.fromkeys(c.group for c in COMMANDS))
        return _usage_error(f"unknown command {word!r} (choose from {names})", usage)
    if not rest or rest[0] in HELP:
        text = group_help(word, members)
        if rest:
            print(text)
            return 0
        return _usage_error(f"`{PROG} {word}` needs a command", text.splitlines()[0])
    subs = ", ".join(c.name.split()[1] for c in members)
    return _usage_error(f"unknown command {word} {rest[0]!r} (choose from {subs})",
                        group_help(word, members).splitlines()[0])
