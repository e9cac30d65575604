"""Errors that are the user's to fix.

Anything raised as `SftlabError` is printed by the CLI as one line (`sftlab: error: ...`) with exit
code 2 and no traceback; any other exception is a bug in sftlab and keeps its traceback.
"""

from __future__ import annotations


class SftlabError(Exception):
    """A problem with the user's input: a file, a line, a config key, a model name."""


class ConfigError(SftlabError):
    """One or more invalid config keys, all reported at once."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(f"{source}: {count}: " + "; ".join(problems))

    def lines(self) -> list[str]:
        """One line per problem, each naming the file and the key."""
        return [f"{self.source}: {problem}" for problem in self.problems]
