"""Every command's --help: a one-line summary and an example that would actually run.

The click tree is walked, so a command added later (a new top-level command, a new
`batch` subcommand) is checked without touching this file. Each example line of the
rendered help is parsed as a shell line and every `evstore ...` invocation in it is
resolved against the tree: the subcommand path must exist, every option must belong to
the command it follows, and required options and arguments must be there.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

import click
import pytest
from click.testing import CliRunner

from cli.app import app

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

SUMMARY_LIMIT = 70
SEPARATORS = {"&&", "||", "|", ";", "&", "(", ")"}


def walk(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1] if path else "evstore")
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, (
                f"{' '.join(('evstore', *path, name))} is listed but cannot be resolved"
            )
            yield from walk(sub, (*path, name))


TREE = dict(walk(app))
SUBCOMMANDS = [path for path in TREE if path]


def ids(path: tuple[str, ...]) -> str:
    return " ".join(("evstore", *path))


def help_of(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="evstore", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def example_lines(help_text: str) -> list[str]:
    """The lines of the `Example:` block of rendered help (more indented than it, until a
    blank line or a less indented one)."""
    lines = help_text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Example:"]
    assert len(starts) == 1, f"expected one 'Example:' block, found {len(starts)}:\n{help_text}"
    start = starts[0]
    indent = len(lines[start]) - len(lines[start].lstrip())
    block = []
    for line in lines[start + 1 :]:
        if not line.strip() or len(line) - len(line.lstrip()) <= indent:
            break
        block.append(line.strip())
    return block


def invocations(line: str) -> list[list[str]]:
    """The simple commands of a shell line (split on && || | ; & and parentheses, comments
    dropped), each as a list of words."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in SEPARATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def check_line(line: str) -> list[tuple[str, ...]]:
    """An example line: it starts with `evstore`; every `evstore ...` in it (after `||`, in a
    pipe) resolves. The subcommand paths it runs."""
    commands = invocations(line)
    assert commands, f"example line has no command: {line!r}"
    assert commands[0][0] == "evstore", f"example line does not start with `evstore`: {line!r}"
    return [resolve(words) for words in commands if words[0] == "evstore"]


def _find_option(
    command: click.Command, ctx: click.Context, token: str
) -> tuple[click.Option | None, str | None]:
    """The option `token` names on `command` (with an inline `=value`), or None."""
    name, _, inline = token.partition("=") if token.startswith("--") else (token, "", "")
    for param in command.get_params(ctx):
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            return param, inline or None
    # Repeated short flags, e.g. -vv.
    if not token.startswith("--") and len(token) > 2 and len(set(token[1:])) == 1:
        for param in command.get_params(ctx):
            if isinstance(param, click.Option) and token[:2] in param.opts and param.count:
                return param, None
    return None, None


def resolve(words: list[str]) -> tuple[str, ...]:
    """Check an `evstore ...` invocation against the click tree; the subcommand path it runs.
    Raises AssertionError naming what is wrong."""
    assert words[0] == "evstore", f"an example must start with `evstore`: {shlex.join(words)}"
    command: click.Command = app
    ctx = click.Context(app, info_name="evstore", **app.context_settings)
    path: list[str] = []
    given: set[str] = set()
    positionals: list[str] = []
    wants_help = False
    i = 1
    while i < len(words):
        word = words[i]
        where = ids(tuple(path))
        if word.startswith("-") and word != "-":
            option, inline = _find_option(command, ctx, word)
            assert option is not None, f"`{where}` has no option {word} (in: {shlex.join(words)})"
            assert option.name is not None
            given.add(option.name)
            wants_help = wants_help or word in ("-h", "--help", "--version")
            if option.is_flag or option.count:
                i += 1
                continue
            value = inline if inline is not None else (words[i + 1] if i + 1 < len(words) else None)
            assert value is not None, f"{word} of `{where}` needs a value (in: {shlex.join(words)})"
            if not isinstance(option.type, (click.File, click.Path)) and option.callback is None:
                try:
                    option.type.convert(value, option, ctx)
                except click.BadParameter as exc:
                    raise AssertionError(
                        f"{word} {value!r} of `{where}`: {exc.format_message()}"
                    ) from None
            i += 1 if inline is not None else 2
            continue
        if isinstance(command, click.Group) and not positionals:
            sub = command.get_command(ctx, word)
            assert sub is not None, (
                f"`{where}` has no subcommand {word!r} (in: {shlex.join(words)})"
            )
            _check_required(command, tuple(path), given, positionals, words)
            command, path, given = sub, [*path, word], set()
            ctx = click.Context(sub, info_name=word, parent=ctx)
        else:
            positionals.append(word)
        i += 1
    if wants_help:
        return tuple(path)
    assert not isinstance(command, click.Group), (
        f"`{ids(tuple(path))}` needs a subcommand (in: {shlex.join(words)})"
    )
    _check_required(command, tuple(path), given, positionals, words)
    return tuple(path)


def _check_required(
    command: click.Command,
    path: tuple[str, ...],
    given: set[str],
    positionals: list[str],
    words: list[str],
) -> None:
    where = ids(path)
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    for param in command.params:
        if (
            isinstance(param, click.Option)
            and param.required
            and param.name not in given
            and not param.envvar
        ):
            raise AssertionError(
                f"`{where}` requires {max(param.opts, key=len)} (in: {shlex.join(words)})"
            )
    least = sum(max(p.nargs, 1) for p in arguments if p.required)
    most = (
        float("inf") if any(p.nargs == -1 for p in arguments) else sum(p.nargs for p in arguments)
    )
    assert least <= len(positionals) <= most, (
        f"`{where}` takes {least} to {most} argument(s), the example gives {len(positionals)}: "
        f"{positionals} (in: {shlex.join(words)})"
    )


# --- the resolver itself catches what it is for ------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "evstore batch strat a --session 001",  # a subcommand typo
        "evstore apend --session 001 P1 Complete",  # a command typo
        "evstore project --sesion 001",  # an option typo
        "evstore project --db x.db",  # a global option after the command
        "evstore batch next",  # a required option missing
        "evstore batch",  # a group without its subcommand
        "evstore history",  # a required argument missing
        "evstore init extra",  # an argument too many
        "evstore show --depth 9",  # a value outside its range
        "evstore --durability fast init",  # a value outside its choices
        "item=$(evstore batch next --session 001)",  # not an evstore line
    ],
)
def test_the_resolver_refuses_a_broken_example(line: str) -> None:
    with pytest.raises(AssertionError):
        check_line(line)


def test_the_resolver_accepts_real_lines() -> None:
    assert check_line("evstore status || evstore project  # catch up") == [
        ("status",),
        ("project",),
    ]
    assert check_line("evstore -vv --db j.db log --since 3 --json | jq .type") == [("log",)]
    assert check_line("evstore watch --interval=250 &") == [("watch",)]
    assert check_line('evstore fail P1 -s 001 --error "a b" --max-fix-tasks 2') == [("fail",)]
    assert check_line("evstore batch start a b c -s 001 --parallel 2 --json") == [
        ("batch", "start")
    ]


# --- every command ---------------------------------------------------------------------------


def test_the_tree_is_walked() -> None:
    """A sanity check of the walk itself: groups' subcommands are in it."""
    assert ("batch", "next") in TREE
    assert ("init",) in TREE
    assert set(app.commands) <= {path[0] for path in SUBCOMMANDS}


def test_every_command_a_module_defines_is_on_the_group() -> None:
    """The command modules define commands and cli/app.py adds them: none is left out."""
    import importlib  # noqa: PLC0415
    import pkgutil  # noqa: PLC0415

    import cli  # noqa: PLC0415

    on_tree = {id(command) for command in TREE.values()}
    defined = {
        f"{info.name}.{name}": command
        for info in pkgutil.iter_modules(cli.__path__, "cli.")
        if info.name not in ("cli.mcp_server", "cli.__main__")  # the MCP SDK; runs the CLI
        for name, command in vars(importlib.import_module(info.name)).items()
        if isinstance(command, click.Command) and command.callback is not None
        and command.callback.__module__ == info.name
    }
    left_out = {name for name, command in defined.items() if id(command) not in on_tree}
    assert "cli.write.import_" in defined
    assert left_out == set()


@pytest.mark.parametrize("path", SUBCOMMANDS, ids=ids)
def test_summary_is_one_short_line(path: tuple[str, ...]) -> None:
    command = TREE[path]
    assert command.help, f"{ids(path)} has no docstring"
    first, _, rest = command.help.strip().partition("\n")
    assert first.strip(), f"{ids(path)}: empty first line"
    assert len(first) <= SUMMARY_LIMIT, (
        f"{ids(path)}: summary is {len(first)} chars (at most {SUMMARY_LIMIT}): {first!r}"
    )
    assert not rest or rest.startswith("\n"), (
        f"{ids(path)}: the summary must be followed by a blank line"
    )
    short = command.get_short_help_str(limit=SUMMARY_LIMIT)
    assert not short.endswith("..."), f"{ids(path)}: summary truncated in listings: {short!r}"
    assert short == first.strip(), (
        f"{ids(path)}: listings show {short!r}, not the first line {first!r}"
    )


@pytest.mark.parametrize("path", list(TREE), ids=ids)
def test_help_shows_summary_and_a_working_example(path: tuple[str, ...]) -> None:
    command = TREE[path]
    text = help_of(path)
    assert text.startswith(f"Usage: {ids(path)} "), text
    if path:  # the root's summary is the program's tagline, shown only here
        assert command.help is not None
        assert command.help.strip().splitlines()[0] in text
    lines = example_lines(text)
    assert lines, f"{ids(path)}: empty Example block"
    ran = [ran for line in lines for ran in check_line(line)]
    if path:  # a command's example shows that command (or, for a group, its subcommands)
        assert any(r[: len(path)] == path for r in ran), f"{ids(path)}: no example runs it: {lines}"


def test_root_help_lists_every_command_in_exactly_one_group() -> None:
    text = help_of(())
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            current = line.rstrip(":") if line.endswith(":") else None
            if current is not None:
                sections[current] = []
        elif current is not None and line.startswith("  ") and not line.startswith("   "):
            sections[current].append(line.split()[0])
    groups = {title: names for title, names in sections.items() if title.endswith(" commands")}
    assert list(groups) == ["Write commands", "Read commands", "Maintain commands"], list(sections)
    listed = [name for names in groups.values() for name in names]
    for name in app.commands:
        assert listed.count(name) == 1, (
            f"`evstore {name}` is listed {listed.count(name)} time(s) in `evstore --help`: {groups}"
        )
    assert sorted(listed) == sorted(app.commands)


GROUPS = [path for path, command in TREE.items() if isinstance(command, click.Group)]


@pytest.mark.parametrize("path", GROUPS, ids=ids)
def test_group_listing_shows_each_summary_whole(path: tuple[str, ...]) -> None:
    """At 80 columns; click shortens a plain group's rows to fit (a root row to 70)."""
    group = TREE[path]
    assert isinstance(group, click.Group)
    text = " ".join(help_of(path).split())  # rows may wrap at the terminal width
    for name, command in group.commands.items():
        assert command.help is not None
        first = command.help.strip().splitlines()[0]
        assert f" {name} {first} " in f"{text} ", (
            f"`{ids(path)} --help` does not show {name}'s summary whole: {first!r}"
        )


@pytest.mark.parametrize("path", [(), ("batch", "next")], ids=ids)
def test_help_in_a_real_process(run: Callable[..., Any], path: tuple[str, ...]) -> None:
    """What users see: the installed console script."""
    done = run(*path, "--help", env={"COLUMNS": "100"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: {ids(path)} ")
    assert example_lines(done.stdout)
    assert done.stderr == ""
