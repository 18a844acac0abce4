"""Have I Been Pwned's Pwned Passwords range API, behind a small adapter.

k-anonymity: only the first five hexadecimal characters of the password's SHA-1 leave the
server; the API answers every suffix it knows under that prefix (with padding rows of count 0,
so the answer's size does not betray the prefix either) and the match is made here.

The check is an extra layer over the offline list of ``accounts.check_password``: when the
API is slow, down or answers nonsense, the adapter says "unknown" (``None``) with a log line
and the password is judged on the offline rules alone. A person choosing a password is never
blocked by a third-party outage.
"""

from __future__ import annotations

import hashlib
import logging

import httpx

log = logging.getLogger(__name__)

USER_AGENT = "place-des-entreprises (verification des mots de passe)"


class PwnedPasswordsClient:
    def __init__(self, base_url: str, *, timeout: float, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.transport = transport

    def breach_count(self, password: str) -> int | None:
        """How many times the password appears in known breaches (0: never), or None when the
        API could not say."""
        digest = hashlib.sha1(password.encode("utf-8")).hexdigest().upper()  # noqa: S324 - the API's key
        prefix, suffix = digest[:5], digest[5:]
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
                response = client.get(
                    f"{self.base_url}/range/{prefix}",
                    headers={"Add-Padding": "true", "User-Agent": USER_AGENT, "Accept": "text/plain"},
                )
        except httpx.HTTPError as error:
            log.warning("Pwned Passwords injoignable (%s) : mot de passe vérifié sur la liste locale seule", error)
            return None
        if response.status_code != 200:
            log.warning(
                "Pwned Passwords a répondu %s : mot de passe vérifié sur la liste locale seule", response.status_code
            )
            return None
        return _count_in(response.text, suffix)


def _count_in(body: str, suffix: str) -> int | None:
    """The count of ``suffix`` in a range answer (``SUFFIX:COUNT`` lines), 0 when absent;
    None when the answer is not a range answer at all."""
    seen_any = False
    for line in body.splitlines():
        candidate, sep, count = line.strip().partition(":")
        if not sep or len(candidate) != 35 or not count.isdigit():
            continue
        seen_any = True
        if candidate.upper() == suffix:
            return int(count)
    if not seen_any:
        log.warning("Pwned Passwords : réponse illisible, mot de passe vérifié sur la liste locale seule")
        return None
    return 0
