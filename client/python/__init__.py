"""The Python client for proofrace.

    async with Client.connect("127.0.0.1:7340") as client:
        job = await client.solve(problem_text, provers=["z3", "cvc5"], time_limit=30)
        async with job:                     # leaving early cancels the solve
            outcome = await job.result()

Calls must run inside pycapnp's loop: `asyncio.run(capnp.run(main()))`. For scripts,
`proofrace.client.sync.solve(address, text)` does all of it.
"""

from proofrace.client.address import Address
from proofrace.client.connection import Client, ConnectError, LoginRefused, LoginRequired
from proofrace.client.job import Job
from proofrace.client.transport import ClientClosed
from proofrace.core.model import (
    Answer,
    AttemptOutcome,
    AttemptResult,
    CacheHit,
    CachePolicy,
    CancelCause,
    CancelReason,
    Conflict,
    ErrorKind,
    Format,
    Grounds,
    ProverInfo,
    SolveError,
    SolveOutcome,
    SolveState,
    SolveStatus,
    Source,
    Strategy,
    Verdict,
)

__all__ = [
    "Address",
    "Answer",
    "AttemptOutcome",
    "AttemptResult",
    "CacheHit",
    "CachePolicy",
    "CancelCause",
    "CancelReason",
    "Client",
    "ClientClosed",
    "Conflict",
    "ConnectError",
    "ErrorKind",
    "Format",
    "Grounds",
    "Job",
    "LoginRefused",
    "LoginRequired",
    "ProverInfo",
    "SolveError",
    "SolveOutcome",
    "SolveState",
    "SolveStatus",
    "Source",
    "Strategy",
    "Verdict",
]
