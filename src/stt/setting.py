"""How a group of settings is declared: frozen dataclasses whose fields carry their help.

A group lives beside the code that uses it (an engine's options in its engine package, the
per-stream limits beside the session) and imports nothing heavy; `stt.config` composes the
groups into `Settings`, reads the environment and makes the flags, the README table and the
validation from these declarations. Nothing here reads the environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import field
from typing import Any, ClassVar


def setting(default: Any, help: str, *, name: str | None = None, unset: str = "none") -> Any:
    """A field that is also a flag and an environment variable.

    `name` is its public name (flag `--name`, variable `STT_NAME`) when the group's prefix
    plus the field name would not give the name deployments already use; `unset` is what a
    None default means, as the docs show it.
    """
    return field(default=default, metadata={"help": help, "name": name, "unset": unset})


class SettingsError(ValueError):
    """Invalid settings; `problems` lists every one found, so a user fixes them at once."""

    def __init__(self, problems: list[str], what: str = "settings") -> None:
        super().__init__(f"invalid {what}: " + "; ".join(problems))
        self.problems = problems


class Checked:
    """Validates a group once, when it is made: `checks()` yields (ok, message) pairs.

    Messages name settings by their public names (`whisper_window_s`, not `window_s`), the
    names users set.
    """

    prefix: ClassVar[str] = ""
    """Public name of a field: prefix + field name, unless the field says otherwise."""
    what: ClassVar[str] = "settings"

    def __post_init__(self) -> None:
        problems = [message for ok, message in self.checks() if not ok]
        if problems:
            raise SettingsError(problems, self.what)

    def checks(self) -> Iterator[tuple[bool, str]]:
        return iter(())
