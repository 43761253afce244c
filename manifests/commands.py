"""What every command line of the project does with an error: one message, an exit status, no traceback.

``pairgen`` and ``pretrain`` run their subcommand through :func:`run_command`:

* a bad option value (:class:`~manifests.options.ConfigError`), a folder
  another run holds (:class:`~manifests.lock.FolderBusy`) and the command's
  own ``usage`` errors end with exit status 2, as argparse's own errors do;
* the command's expected ``failures`` (a bad input file, an unreadable
  shard, ...) with exit status 1;
* Ctrl-C with 130 and the command's ``interrupted`` hint.

``--debug`` (``args.debug``) re-raises instead, for the traceback.
"""

from __future__ import annotations

import sys
from argparse import Namespace
from collections.abc import Callable

from manifests import store
from manifests.lock import FolderBusy
from manifests.options import ConfigError

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "REASON_CHARS", "run_command", "shorten"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130  # 2: a bad option value, as argparse's own errors
REASON_CHARS = 300  # a failure's reason as printed (Ray's node-death reasons run to pages; manifests keep it whole)


def shorten(text: str, limit: int = REASON_CHARS) -> str:
    """``text`` cut to ``limit`` characters, ``...`` at the end when cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_command(
    prog: str,
    args: Namespace,
    func: Callable[[Namespace], int],
    *,
    failures: tuple[type[BaseException], ...] = (),
    usage: tuple[type[BaseException], ...] = (),
    interrupted: str = "interrupted",
) -> int:
    """``func(args)``'s exit status, or the status and one line on stderr for an error it raised."""
    try:
        store.resolve_args(args)  # folders given as URIs: their local mirrors (manifests.store)
        return func(args)
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigError, FolderBusy, *usage, *failures) as e:
        if getattr(args, "debug", False):
            raise
        if isinstance(e, ConfigError):
            print(f"{prog} {args.command}: error: {e.cli_message()}", file=sys.stderr)
        else:
            print(f"{prog}: error: {store.shown(str(e))}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, (ConfigError, FolderBusy, *usage)) else EXIT_FAILED
    finally:
        store.unmount_all()
