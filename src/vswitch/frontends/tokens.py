"""API tokens and their roles: the token file's format, read by vswitchd (all tokens) and the CLI (its one).

A token file holds one token per line as ``role:token`` with role ``admin`` (everything) or
``reader`` (GET/HEAD only); blank lines and lines starting with ``#`` are ignored. For
compatibility, a file whose only line is a bare token (no ``admin:``/``reader:`` prefix) holds one
admin token. A token is printable ASCII without spaces (it travels in an HTTP header).

Invariants: a token's text never appears in an error message (only its line number); the daemon
reads the file only when it is private (no group/other permission bits) and owned by root or by
the daemon's own uid, checked on the opened file, so a swap between check and read changes nothing.
Must not touch: HTTP, the manager.
"""

from __future__ import annotations

import enum
import os
import stat

#: the HTTP methods a reader may use; every other method is a mutation
READ_METHODS = frozenset({"GET", "HEAD"})


class Role(enum.StrEnum):
    ADMIN = "admin"
    READER = "reader"


class TokenFileError(ValueError):
    """A token file is unusable; the message names the file, the line and what is wrong."""


def _valid_token(token: str) -> bool:
    return bool(token) and all(33 <= ord(c) <= 126 for c in token)


def parse_tokens(text: str, source: str) -> dict[str, Role]:
    """The tokens in `text` (a token file's content) with their roles.

    Raises TokenFileError for a line that is not ``role:token`` (or the single bare token of an old
    file), an unknown role, a token with spaces or non-ASCII characters, a token given twice, or a file
    without any token.
    """
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    tokens: dict[str, Role] = {}
    for n, line in lines:
        role_text, sep, token = line.partition(":")
        if sep and role_text in {r.value for r in Role}:
            role = Role(role_text)
        elif len(lines) == 1:
            role, token = Role.ADMIN, line  # a file of one bare token, as before roles existed
        else:
            raise TokenFileError(f"{source} line {n}: expected 'admin:TOKEN' or 'reader:TOKEN'")
        token = token.strip()
        if not _valid_token(token):
            raise TokenFileError(f"{source} line {n}: a token is printable ASCII without spaces, and not empty")
        if token in tokens:
            raise TokenFileError(f"{source} line {n}: this token is already listed on an earlier line")
        tokens[token] = role
    if not tokens:
        raise TokenFileError(f"{source} holds no token")
    return tokens


def read_token_file(path: str, *, require_private: bool) -> dict[str, Role]:
    """The tokens of the file at `path`.

    With `require_private` (the daemon), raises TokenFileError unless the file is a regular file with
    no group/other permission bits, owned by root or by this process's uid. Also raises
    TokenFileError when the file cannot be read or does not parse (see `parse_tokens`).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise TokenFileError(f"cannot read token file {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if require_private:
            mode = stat.S_IMODE(st.st_mode)
            if not stat.S_ISREG(st.st_mode):
                raise TokenFileError(f"token file {path} is not a regular file")
            if mode & 0o077:
                raise TokenFileError(f"token file {path} has mode {mode:04o}: group or others may read it; "
                                     f"run chmod 600 {path}")
            if st.st_uid not in (0, os.geteuid()):
                raise TokenFileError(f"token file {path} is owned by uid {st.st_uid}, not by root or by this "
                                     f"daemon (uid {os.geteuid()}); run chown root {path}")
        data = f.read(1 << 20)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise TokenFileError(f"token file {path} is not ASCII text") from None
    return parse_tokens(text, f"token file {path}")


def client_token(path: str) -> str:
    """The one token a client sends, from a token file (a ``role:`` prefix is dropped).

    Raises TokenFileError when the file cannot be read, does not parse, or holds several tokens.
    """
    tokens = read_token_file(path, require_private=False)
    if len(tokens) != 1:
        raise TokenFileError(f"token file {path} holds {len(tokens)} tokens; a client needs a file with one")
    return next(iter(tokens))
