"""When to send a call again and how long to wait: urllib3's ``Retry`` with three
changes (full jitter, ``Retry-After`` capped and followed by the jittered backoff,
read timeouts never retried) and a per-call record of the attempts."""

from __future__ import annotations

import logging
import random
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from urllib3.exceptions import InvalidHeader, ReadTimeoutError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

log = logging.getLogger("modeldock_client")

# The answers worth another try: the server is busy or a proxy lost it.
RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass
class Failure:
    """One attempt that did not succeed: its answer's status or its error."""

    status: int | None
    error: Exception | None
    response: BaseHTTPResponse | None


# The failed attempts of the call running in this thread (or task), or None.
attempt_log: ContextVar[list[Failure] | None] = ContextVar(
    "modeldock_attempts", default=None
)


class SafeRetry(Retry):
    """urllib3's Retry for calls that are safe to repeat (see ``policy``)."""

    # Retry-After makes a 413 retryable in urllib3: here only 429 and 503 honour it.
    RETRY_AFTER_STATUS_CODES = frozenset({429, 503})

    def __init__(self, *args: Any, retry_after_cap: float = 60.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.retry_after_cap = retry_after_cap

    def new(self, **kw: Any) -> SafeRetry:
        retry = super().new(**kw)
        retry.retry_after_cap = self.retry_after_cap
        return retry

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> SafeRetry:
        failures = attempt_log.get()
        if failures is not None:
            status = response.status if response is not None else None
            failures.append(Failure(status, error, response))
        if isinstance(error, ReadTimeoutError):
            # The server has the request and is slow: sending it again doubles its
            # load and the caller's wait. The timeout is the caller's decision.
            raise error.with_traceback(_stacktrace)
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        log.info(
            "retrying %s %s after %s (retry %d)",
            method,
            url,
            response.status if response is not None else repr(error),
            len(retry.history),
        )
        return retry

    def get_backoff_time(self) -> float:
        """Full jitter: uniform in [0, min(backoff_max, backoff × 2^(n-1))]."""
        retries = len(self.history)
        if retries == 0 or self.backoff_factor <= 0:
            return 0.0
        ceiling = min(self.backoff_max, self.backoff_factor * 2 ** (retries - 1))
        return random.uniform(0, ceiling)

    def parse_retry_after(self, retry_after: str) -> float:
        """Seconds or an HTTP date, capped; an unreadable value means 'no header'."""
        try:
            seconds = super().parse_retry_after(retry_after)
        except InvalidHeader:
            return -1.0
        return min(seconds, self.retry_after_cap)

    def sleep_for_retry(self, response: BaseHTTPResponse) -> bool:
        """Wait at least as long as the server asked (capped), plus the backoff's
        random wait: the clients it refused together do not all come back in the
        same instant, and a "Retry-After: 0" refused again and again still backs
        off instead of spending every retry at once."""
        seconds = self.get_retry_after(response)
        if seconds is None or seconds < 0:
            return False
        time.sleep(seconds + self.get_backoff_time())
        return True


def policy(
    retries: int, backoff: float, backoff_max: float, retry_after_max: float
) -> SafeRetry:
    """Retry connection failures (refused, reset before an answer) and 429, 502,
    503 and 504 answers, up to ``retries`` times; nothing else.

    Every call this client makes is safe to repeat: GETs, predictions (a pure
    function of the rows), and POSTs carrying an ``Idempotency-Key``. So POST is
    an allowed method; errors after the request was sent (a reset) are retried,
    but a read timeout is not (``SafeRetry.increment``).
    """
    return SafeRetry(
        total=retries,
        connect=None,
        read=None,
        status=None,
        other=0,  # TLS and other unknown errors: not a busy server, do not repeat
        redirect=0,
        raise_on_redirect=False,  # a redirect answers as an error that says so
        status_forcelist=RETRY_STATUSES,
        allowed_methods=None,  # every method: see above
        backoff_factor=backoff,
        backoff_max=backoff_max,
        raise_on_status=False,  # out of retries: return the last answer to read
        respect_retry_after_header=True,
        retry_after_cap=retry_after_max,
    )
