"""`vswitchd`: the composition root. Store → SwitchManager → restore → REST on a unix socket (and TCP).

Owns the process: arguments, logging (stderr; systemd adds timestamps), the listening sockets, the
asyncio loop that runs the uvicorn servers, and the order of start and stop:

    start: check the socket path (refuse if a live vswitchd answers there, remove a stale file),
           bind it (mode 0660) and the optional TCP listener, open ConfigStore(DIR/config.sqlite),
           SwitchManager(store), manager.restore(), then serve both listeners in one loop.
    stop (SIGTERM/SIGINT): stop accepting, let in-flight requests finish, manager.shutdown()
           (stops datapaths, gives NICs back, keeps the stored config), remove the socket, exit 0.

Invariants:
- foreground only, never daemonizes (systemd Type=simple);
- the unix socket is trusted by file permissions (0660, parent dir created if missing; every request
  there is admin); the TCP listener always needs a bearer token from ``--token-file`` (one
  ``role:token`` per line, role admin or reader; the file must be mode 0600 or stricter and owned by
  root or by the daemon's uid, else the daemon refuses to start) and a loopback address unless
  ``--allow-remote``; ``--tls-cert``/``--tls-key`` make it HTTPS (uvicorn's own TLS);
- the state directory is 0700 and config.sqlite 0600: wider modes found at start are tightened,
  and the log says so;
- at most `WATCH_CONCURRENCY` watches run at once across both listeners (one shared pool);
- the socket file is removed only if it is still the one this process bound;
- the manager is imported inside `main()`, so this module imports even where it does not exist;
  uvicorn and the REST app (FastAPI: most of the start-up time) only after ``restore()``, so VMs'
  traffic flows again before the API answers (the reset time of a restart).

Must not touch: switch logic (all of it is behind `SwitchApi`), the kernel, the datapath.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import signal
import socket
import ssl
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import vswitch
from vswitch.control.api import DEFAULT_SOCKET
from vswitch.control.model import BUSY_POLL_MAX_US, DatapathMode, FieldError, check_busy_poll_us
from vswitch.frontends.tokens import Role, TokenFileError, read_token_file

log = logging.getLogger("vswitchd")

DEFAULT_STATE_DIR = "/var/lib/vswitch"
SOCKET_MODE = 0o660
STATE_DIR_MODE = 0o700
CONFIG_MODE = 0o600
LOG_LEVELS = ("debug", "info", "warning", "error")


class StartupError(Exception):
    """The daemon cannot start; the message says why (exit code 1)."""


# ---- arguments ------------------------------------------------------------------------------------

def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → (host, port); ValueError with a message otherwise."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"--listen wants HOST:PORT (e.g. 127.0.0.1:8470), got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--listen port must be a number, got {port_text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"--listen port must be 1-65535, got {port}")
    return host, port


def is_loopback(host: str) -> bool:
    """True for loopback addresses and ``localhost``; host names are not resolved."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_tokens(path: str) -> dict[str, Role]:
    """The tokens (with their roles) in the token file at `path`.

    StartupError when the file is unreadable, not mode 0600 or stricter, not owned by root or by
    this process's uid, or malformed (the message says which line, never a token).
    """
    try:
        return read_token_file(path, require_private=True)
    except TokenFileError as e:
        raise StartupError(str(e)) from None


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """Check that `cert` and `key` load as a server certificate; StartupError saying why not."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except OSError as e:
        raise StartupError(f"cannot read TLS certificate {cert} or key {key}: {e.strerror or e}") from None
    except ssl.SSLError as e:
        raise StartupError(f"TLS certificate {cert} and key {key} do not load: {e.reason or e}") from None
    return context


def private_path(path: Path, mode: int, *, directory: bool) -> None:
    """Create `path` with `mode` (a directory or an empty file), or tighten it to `mode` if it is wider.

    Tightening is logged; StartupError when the path is of the wrong type or cannot be changed.
    """
    try:
        if directory:
            path.mkdir(parents=True, exist_ok=True, mode=mode)
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode))
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode) != directory or stat.S_ISLNK(st.st_mode):
            raise StartupError(f"{path} exists but is not a {'directory' if directory else 'regular file'}")
        current = stat.S_IMODE(st.st_mode)
        if current & ~mode:
            os.chmod(path, current & mode)
            log.warning("%s had mode %04o, wider than %04o: tightened to %04o", path, current, mode, current & mode)
    except OSError as e:
        raise StartupError(f"cannot prepare {path}: {e.strerror or e}") from None


class _PrintVersion(argparse.Action):
    """``--version``: reads the package metadata only when asked, not on every start."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog} {vswitch.version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vswitchd",
        description="vswitch daemon: restores the configured switches and serves the REST API "
                    "on a unix socket (and optionally on loopback TCP with a bearer token).",
        epilog="exit status: 0 after a clean stop (SIGTERM/SIGINT), 1 when it cannot start or fails "
               "(the log says why), 2 for a usage error")
    p.add_argument("--version", action=_PrintVersion)
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                   help=f"where config.sqlite lives (default {DEFAULT_STATE_DIR})")
    p.add_argument("--socket", default=DEFAULT_SOCKET, help=f"unix socket to serve on (default {DEFAULT_SOCKET})")
    p.add_argument("--listen", metavar="HOST:PORT", default=None,
                   help="also serve on TCP (needs --token-file; loopback only unless --allow-remote)")
    p.add_argument("--listen-fd", metavar="FD", type=int, default=None,
                   help="serve on this inherited, listening TCP socket instead of --listen (e.g. one a lab bound "
                        "in another network namespace, so a browser there reaches this daemon); needs --token-file")
    p.add_argument("--token-file", default=None,
                   help="tokens for --listen, one 'admin:TOKEN' or 'reader:TOKEN' per line (# comments; a "
                        "single bare token is admin); must be mode 0600 and owned by root")
    p.add_argument("--metrics-public", action="store_true",
                   help="serve GET /metrics on --listen without a token (for a Prometheus server that has "
                        "none); every other path still needs one")
    p.add_argument("--tls-cert", default=None, metavar="PEM", help="serve --listen over HTTPS with this certificate")
    p.add_argument("--tls-key", default=None, metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("--allow-remote", action="store_true", help="allow --listen on a non-loopback address")
    p.add_argument("--lab-view", default=None, metavar="FILE",
                   help="a lab's view file (vswitch lab up gives it): served at GET /lab for the web UI's lab "
                        "page, which draws the lab and its last `lab trace`")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="default info")
    p.add_argument("--busy-poll-us", type=int, default=0, metavar="US",
                   help="after forwarding, keep polling ports for US microseconds before sleeping: "
                        f"lower latency for more CPU (0-{BUSY_POLL_MAX_US}, default 0 = off)")
    p.add_argument("--datapath", choices=[m.value for m in DatapathMode], default=DatapathMode.AUTO.value,
                   help="what a switch created with --datapath auto (the default) uses: auto = the kernel fast "
                        "path (tc-bpf) when it loads and every port is a link, else Python; kernel = refuse "
                        "what it cannot serve; python = every frame in Python (default auto)")
    return p


def setup_logging(level: str) -> None:
    """Log to stderr; without timestamps under systemd (the journal adds its own)."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format=fmt, force=True)


# ---- sockets --------------------------------------------------------------------------------------

def bind_unix_socket(path: str) -> socket.socket:
    """Bind and listen on `path` with mode 0660, creating its directory and removing a stale file.

    StartupError when the path is not a socket, or when a live server answers there.
    """
    parent = Path(path).parent
    parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise StartupError(f"{path} exists and is not a socket; refusing to remove it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(2.0)
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("removing stale socket %s", path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        except OSError as e:
            raise StartupError(f"cannot check existing socket {path}: {e.strerror or e}") from None
        else:
            raise StartupError(f"another vswitchd is already serving {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)  # the socket never exists with wider permissions, even for a moment
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        raise StartupError(f"cannot bind unix socket {path}: {e.strerror or e}") from None
    finally:
        os.umask(old_umask)
    os.chmod(path, SOCKET_MODE)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def adopted_address(fd: int, allow_remote: bool) -> tuple[str, int]:
    """The (host, port) of the inherited listening socket `fd` (``--listen-fd``); StartupError when it
    is not a listening TCP socket, or not on loopback without `allow_remote`."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError as e:
        raise StartupError(f"--listen-fd {fd}: not an open socket ({e.strerror})") from None
    with sock:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
            raise StartupError(f"--listen-fd {fd}: not a TCP socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise StartupError(f"--listen-fd {fd}: the socket is not listening")
        host, port = sock.getsockname()[:2]
    if not is_loopback(host) and not allow_remote:
        raise StartupError(f"--listen-fd {fd} is bound to {host}, not a loopback address; add --allow-remote "
                           "to expose the API beyond this host")
    return host, port


def bind_tcp_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on (host, port); StartupError with the reason if that fails."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise StartupError(f"cannot resolve --listen host {host!r}: {e.strerror}") from None
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        hint = " (port in use)" if e.errno == errno.EADDRINUSE else ""
        raise StartupError(f"cannot listen on {host}:{port}: {e.strerror}{hint}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def remove_socket_file(path: str, inode: int | None) -> None:
    """Unlink `path` if it is still the socket this process bound (same inode)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if inode is None or st.st_ino == inode:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# ---- serving --------------------------------------------------------------------------------------

def _server_class() -> Any:
    """A uvicorn server class that leaves signals to the daemon (several servers share one loop)."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        def install_signal_handlers(self) -> None:  # uvicorn < 0.29
            pass
    return _Server


async def serve(listeners: list[tuple[Any, socket.socket]], log_level: str, pending_signals: list[int],
                tls: dict[int, tuple[str, str]] | None = None, on_stop: Any = None) -> bool:
    """Serve each (app, socket) until SIGTERM/SIGINT; True when stopped by a signal, False if a server failed.

    `pending_signals` holds signals noted before the loop's own handlers were in place; any there stop at once.
    `tls` maps a listener's index to its (certificate, key) files: that one speaks HTTPS. `on_stop()` is
    called on the loop when the stop begins (it ends long requests such as watches).
    """
    import uvicorn

    server_cls = _server_class()
    tls = tls or {}
    servers = [
        server_cls(uvicorn.Config(app, lifespan="off", log_config=None, log_level=log_level,
                                  access_log=log_level == "debug", timeout_graceful_shutdown=10,
                                  ssl_certfile=tls[i][0] if i in tls else None,
                                  ssl_keyfile=tls[i][1] if i in tls else None))
        for i, (app, _) in enumerate(listeners)
    ]
    stop_requested = False
    loop = asyncio.get_running_loop()

    def request_stop(signame: str) -> None:
        nonlocal stop_requested
        if stop_requested:
            log.warning("%s again: forcing exit of in-flight requests", signame)
            for s in servers:
                s.force_exit = True
            return
        log.info("%s: stopping", signame)
        stop_requested = True
        if on_stop is not None:
            on_stop()
        for s in servers:
            s.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop, sig.name)
    if pending_signals:
        request_stop(signal.Signals(pending_signals[0]).name)
    tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, (_, sock) in zip(servers, listeners, strict=True)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if not stop_requested:
            log.error("a listener stopped unexpectedly; stopping the others")
        for s in servers:
            s.should_exit = True
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    ok = stop_requested
    for r in results:
        if isinstance(r, BaseException):
            log.error("listener failed: %r", r)
            ok = False
    return ok


def run(args: argparse.Namespace) -> int:
    """Start, serve until told to stop, shut down. Return the exit code."""
    tokens: dict[str, Role] = {}
    tcp_addr: tuple[str, int] | None = None
    tls: tuple[str, str] | None = None
    try:
        check_busy_poll_us(args.busy_poll_us)
    except FieldError as exc:
        raise StartupError(f"--busy-poll-us: {exc}") from None
    if args.listen or args.listen_fd is not None:
        tcp_addr = parse_listen(args.listen) if args.listen else adopted_address(args.listen_fd, args.allow_remote)
        tokens = read_tokens(args.token_file)
        if args.tls_cert:
            tls_context(args.tls_cert, args.tls_key)
            tls = (args.tls_cert, args.tls_key)
        elif not is_loopback(tcp_addr[0]):
            log.warning("--listen %s without --tls-cert: tokens and configuration cross the network in clear text",
                        args.listen or f"fd {args.listen_fd} ({tcp_addr[0]}:{tcp_addr[1]})")

    # Outside the serving loop, SIGTERM/SIGINT only note the request: a stop during start-up is honoured
    # once restore is done and one during shutdown is ignored, so neither leaves a switch half-made.
    noted: list[int] = []

    def note(signum: int, _frame: object) -> None:
        noted.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}

    state_dir = Path(args.state_dir)
    private_path(state_dir, STATE_DIR_MODE, directory=True)
    # SQLite gives its -wal and -shm files the mode of the database file, so they are private too
    for name in ("config.sqlite", "config.sqlite-wal", "config.sqlite-shm"):
        if name == "config.sqlite" or (state_dir / name).exists():
            private_path(state_dir / name, CONFIG_MODE, directory=False)
    unix_sock = bind_unix_socket(args.socket)
    inode = os.stat(args.socket).st_ino
    owned = [unix_sock]
    listeners: list[tuple[Any, socket.socket]] = []
    manager: Any = None
    store: Any = None
    watches: Any = None  # the REST side is imported after restore (see the module docstring)
    try:
        tcp_sock: socket.socket | None = None
        if args.listen_fd is not None:
            tcp_sock = socket.socket(fileno=args.listen_fd)
            tcp_sock.setblocking(False)
            owned.append(tcp_sock)
        elif tcp_addr is not None:
            tcp_sock = bind_tcp_socket(*tcp_addr)
            owned.append(tcp_sock)
        from vswitch.control.store import ConfigStore

        store = ConfigStore(state_dir / "config.sqlite")
        try:
            from vswitch.control.manager import SwitchManager
        except ImportError as e:
            raise StartupError(f"the switch manager is not available: {e}") from None
        manager = SwitchManager(store, busy_poll_us=args.busy_poll_us, datapath=DatapathMode(args.datapath),
                                # a port on either would take the API over or write into our state
                                reserved_paths=[args.socket, str(state_dir)])
        log.info("restoring configuration from %s", state_dir / "config.sqlite")
        manager.restore()
        from vswitch.frontends.rest import WatchPool, make_app

        watches = WatchPool()
        lab_view = Path(args.lab_view) if args.lab_view else None
        listeners.append((make_app(manager, watches=watches, lab_view=lab_view), unix_sock))
        log.info("serving on unix socket %s", args.socket)
        if tcp_sock is not None and tcp_addr is not None:
            listeners.append((make_app(manager, tokens=tokens, watches=watches, public_metrics=args.metrics_public,
                                        lab_view=lab_view),
                              tcp_sock))
            roles = ", ".join(f"{sum(r is role for r in tokens.values())} {role}" for role in Role)
            log.info("serving on %s://%s:%d (bearer token required; tokens: %s)",
                     "https" if tls else "http", *tcp_addr, roles)
        ok = asyncio.run(serve(listeners, args.log_level, noted, {1: tls} if tls else None, watches.stop))
        return 0 if ok else 1
    finally:
        for sig in previous:
            signal.signal(sig, note)  # the loop's handlers are gone; keep a late signal from killing shutdown
        if manager is not None:
            log.info("shutting down switches (stored configuration is kept)")
            try:
                manager.shutdown()
            except Exception:
                log.exception("manager shutdown failed")
        if watches is not None:
            watches.shutdown()
        if store is not None:
            store.close()
        for sock in owned:
            sock.close()
        remove_socket_file(args.socket, inode)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    """Entry point of `vswitchd`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.listen and args.listen_fd is not None:
        parser.error("--listen and --listen-fd are two ways to give the TCP listener: give one")
    listens = bool(args.listen) or args.listen_fd is not None
    if listens and not args.token_file:
        parser.error("--listen needs --token-file (the TCP listener always requires a bearer token)")
    if args.token_file and not listens:
        parser.error("--token-file only applies with --listen")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_cert and not listens:
        parser.error("--tls-cert only applies with --listen")
    if args.listen:
        try:
            host, _ = parse_listen(args.listen)
        except ValueError as e:
            parser.error(str(e))
        if not is_loopback(host) and not args.allow_remote:
            parser.error(f"--listen {args.listen} is not a loopback address; add --allow-remote to expose "
                         "the API beyond this host")
    setup_logging(args.log_level)
    try:
        code = run(args)
    except StartupError as e:
        log.error("%s", e)
        code = 1
    except Exception:
        log.exception("vswitchd failed")
        code = 1
    # run() has closed what needs closing (datapaths, store, sockets). Skip the interpreter's teardown:
    # freeing every module's objects costs ~0.5 s of CPU, which a restart adds to the VMs' outage.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
