"""Getting from a bootstrap capability to the Dispatcher: directly, or through `Gate.login`.

Shared by the Python client and by a worker registering with its dispatcher."""

from __future__ import annotations

from typing import Any

from proofrace import schema


class LoginRefused(Exception):
    """The server refused the credential; the message is the server's."""


async def dispatcher_of(bootstrap: Any, credential: str | None) -> Any:
    """The Dispatcher capability: the bootstrap itself without a credential, else the one
    `Gate.login` hands out. Raises LoginRefused."""
    compiled = schema.load()
    if credential is None:
        return bootstrap.cast_as(compiled.Dispatcher)
    result = (await bootstrap.cast_as(compiled.Gate).login(credential)).result
    if result.which() == "refused":
        raise LoginRefused(str(result.refused.message))
    return result.dispatcher
