"""The ``npcf`` click group: every :class:`~npcf.errors.NpcfError` (and OS error on a
file) becomes one line on stderr and exit code 1; an option out of its domain
(:class:`~npcf.errors.ParamError`) and click's usage errors exit with 2; anything
unexpected is one line too, with how to see the traceback (``--debug`` or
``NPCF_DEBUG=1``)."""
from __future__ import annotations

import io
import os
import select
import signal
import sys
import threading
import warnings

import click

from npcf._version import __version__
from npcf.errors import Interrupted, NpcfError, NpcfWarning, ParamError, one_line, os_message

#: exit code after Ctrl-C (128 + SIGINT, as shells report it)
INTERRUPTED = 130
#: exit code when the reader of the output went away (128 + SIGPIPE, as `yes | head` ends)
BROKEN_PIPE = 141
#: commands that only report (no files written): a closed output pipe ends them silently
REPORTING = ("recommend", "datasets", "eval")


class _Command(click.Command):
    """A command that refuses both halves of an on/off flag pair (``--item_based
    --user_based``), or two flags choosing one setting (``eval --generate --evaluate``),
    as a usage error; click would silently keep the last one."""

    def parse_args(self, ctx, args):
        takes_value = {o for p in self.params if isinstance(p, click.Option)
                       and not p.is_flag and not p.count for o in p.opts + p.secondary_opts}
        given, skip = set(), False
        for a in args:
            if a == "--":
                break
            if not skip:
                given.add(a)
            skip = not skip and a in takes_value     # the next token is this option's value
        for p in self.params:
            if isinstance(p, click.Option) and p.is_flag and p.secondary_opts:
                on = [o for o in p.opts if o in given]
                off = [o for o in p.secondary_opts if o in given]
                if on and off:
                    raise click.UsageError(f"{on[0]} and {off[0]} contradict each other; "
                                           "pass one of them", ctx)
        modes: dict[str, list] = {}          # flags that set one value (eval's modes)
        for p in self.params:
            if isinstance(p, click.Option) and p.is_flag and not p.secondary_opts:
                modes.setdefault(p.name, []).append(p)
        for flags in modes.values():
            used = [o for p in flags for o in p.opts if o in given]
            if len(flags) > 1 and len(used) > 1:
                choices = ", ".join(p.opts[0] for p in flags)
                raise click.UsageError(f"{' and '.join(used)} contradict each other; pass "
                                       f"one of {choices}", ctx)
        return super().parse_args(ctx, args)


class _Group(click.Group):
    command_class = _Command

    def make_context(self, *args, **kwargs):
        try:                    # `--version` and `--help` print while the arguments parse
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:
            raise _closed_pipe() from None
        except OSError as err:
            if not _stdout_failed(err):
                raise
            raise click.ClickException(_stdout_message(err)) from None

    def invoke(self, ctx):
        helping = any(a in ("-h", "--help") for a in ctx.args)   # (click empties ctx.args)
        try:
            result = super().invoke(ctx)
            try:
                sys.stdout.flush()          # a closed pipe shows here, not at exit
            except BrokenPipeError:
                raise
            except OSError as err:          # standard output's own error, by construction
                raise click.ClickException(_stdout_message(err)) from None
            return result
        except BrokenPipeError:
            # a command that writes files says why it stopped (its output is not written)
            raise _closed_pipe(None if helping or ctx.invoked_subcommand in REPORTING
                               else ctx.invoked_subcommand) from None
        except ParamError as err:       # an option out of its domain: a usage error
            bad = click.BadParameter(one_line(err.problem),
                                     param_hint=f"'{_flag(ctx, err.param)}'")
            raise _one_line_usage(bad, f"{ctx.command_path} {ctx.invoked_subcommand}") from None
        except click.UsageError as err:
            raise _one_line_usage(err) from None
        except NpcfError as err:
            out = click.ClickException(one_line(err))
            if isinstance(err, Interrupted):
                out.exit_code = err.exit_code
            raise out from None
        except (OSError, MemoryError) as err:
            raise click.ClickException(_stdout_message(err) if _stdout_failed(err)
                                       else os_message(err)) from None
        except _Terminated:
            click.echo(f"{_fresh_line()}Error: terminated (SIGTERM); output being written was "
                       "discarded, files written before were left as they were", err=True)
            raise
        except (KeyboardInterrupt, click.Abort):
            click.echo(f"{_fresh_line()}Aborted!", err=True)
            raise click.exceptions.Exit(INTERRUPTED) from None
        except (click.ClickException, click.exceptions.Exit):
            raise
        except Exception as err:
            if ctx.params.get("debug") or os.environ.get("NPCF_DEBUG", "") not in ("", "0"):
                raise
            raise click.ClickException(
                f"unexpected {type(err).__name__}: {one_line(err)[:300]} (this is a bug in "
                "npcf; rerun with --debug or NPCF_DEBUG=1 for the traceback)") from None


def _flag(ctx, name: str) -> str:
    """The option of the running command whose parameter is ``name`` as typed (``-k``
    for ``k``, ``--json`` for ``json_out``), else ``--name``."""
    command = ctx.command.commands.get(ctx.invoked_subcommand or "") \
        if isinstance(ctx.command, click.Group) else ctx.command
    for p in getattr(command, "params", ()):
        if p.name == name and isinstance(p, click.Option):
            return max(p.opts, key=len)
    return f"--{name}"


def _fresh_line() -> str:
    """A newline on a terminal (past a progress bar or the ``^C`` it echoed), nothing
    where standard error is a file or a pipe (one line per message there)."""
    try:
        return "\n" if sys.stderr.isatty() else ""
    except (AttributeError, ValueError):
        return ""


def _closed_pipe(stopped: str | None = None) -> click.ClickException | click.exceptions.Exit:
    """What a ``BrokenPipeError`` becomes: `npcf ... | head` (the reader has what it wanted)
    ends quietly with :data:`BROKEN_PIPE`, as Unix tools do, after ``Error: STOPPED: ...``
    when a command that writes files was stopped; a broken pipe that is not standard
    output (a socket) is an error. Raised by the caller (click's own handler would exit 1)."""
    if not _stdout_closed():
        return click.ClickException("Broken pipe")
    _silence_stdout()                   # no error at exit's flush
    if stopped:
        click.echo(f"Error: {stopped}: standard output was closed (broken pipe); stopped",
                   err=True)
    return click.exceptions.Exit(BROKEN_PIPE)


def _stdout_failed(err: BaseException) -> bool:
    """Whether ``err`` (an OS error naming no file) came from writing standard output
    (`npcf ... > /dev/full`, a full disk under `> file`): the innermost Python frame it
    passed through was writing to ``sys.stdout`` (click's ``echo``; click may wrap the
    stream, so any stream on standard output's file descriptor counts too)."""
    if not isinstance(err, OSError) or getattr(err, "filename", None) is not None:
        return False
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    out = sys.stdout
    raw, fd = getattr(out, "buffer", out), _fileno(out)
    return any(v is out or v is raw
               or (fd is not None and isinstance(v, io.IOBase) and _fileno(v) == fd)
               for v in tb.tb_frame.f_locals.values())


def _fileno(stream) -> int | None:
    """``stream.fileno()``, or None where it has none (a captured stream)."""
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):
        return None


def _stdout_message(err: OSError) -> str:
    """``standard output: why``; standard output is pointed at /dev/null, so that the
    flush at exit neither fails again nor prints a traceback."""
    _silence_stdout()
    return f"standard output: {err.strerror or one_line(err)}; the output is incomplete"


def _silence_stdout() -> None:
    """Point the process's standard output (file descriptor 1) at /dev/null; nothing when
    ``sys.stdout`` was replaced (a test runner's capture: its descriptor is not ours)."""
    if sys.stdout is not sys.__stdout__ or _fileno(sys.stdout) != 1:
        return
    try:
        nul = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(nul, 1)
    except OSError:
        pass
    finally:
        os.close(nul)


def _stdout_closed() -> bool:
    """Whether standard output is a pipe nobody reads any more (its write end polls as
    an error; a broken pipe elsewhere, such as a socket, is then reported)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poll.poll(0))
    except (OSError, ValueError, AttributeError):      # no fd (captured), no poll
        return False


def _one_line_usage(err: click.UsageError, sub: str | None = None) -> click.UsageError:
    """``err`` printed as one line, the help hint (``sub -h``) at its end (click prints
    the usage block above the message otherwise)."""
    sub = err.ctx.command_path if err.ctx is not None else sub
    message = one_line(err.format_message())
    out = click.UsageError(message + (f" (see `{sub} -h`)" if sub else ""))
    out.exit_code = err.exit_code
    return out


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.version_option(package_name=None, message="npcf %(version)s", version=__version__)
@click.option("--debug", is_flag=True, help="Show the full traceback of an unexpected error.")
def main(debug):
    """npcf: deep-autoencoder collaborative filtering (NumPy/SciPy, ONNX)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    warnings.showwarning = _show_warning


_python_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """npcf's own warnings as one ``warning:`` line on stderr; others as Python shows them."""
    if issubclass(category, NpcfWarning):
        click.echo(f"warning: {one_line(message)}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


class _Terminated(SystemExit):
    """A SIGTERM that ends the command (exit code 143)."""


def _terminate(signum, frame):
    """SIGTERM (``kill``, systemd, Kubernetes) ends the command as an exception would:
    staged output is removed, worker processes are shut down; exit code 143."""
    raise _Terminated(128 + signum)
