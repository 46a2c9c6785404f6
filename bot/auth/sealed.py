"""``AuthProfiles`` ⇄ the database's rows: secrets sealed with the ``SecretBox``, usage stats as the file's JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from bot.auth import codec
from bot.auth.secret_box import SecretBox
from bot.auth.types import AuthProfiles, Credential, CredentialType, UsageStats
from bot.errors import AuthError
from bot.store.auth_types import AgentAuthRows, SealedCredential, UsageRow


@dataclass
class Sealer:
    """Opens and seals one agent's rows. It remembers what it opened last, so that the frequent reloads of
    an unchanged state decrypt nothing, and an edit re-seals only the credentials it changed."""

    box: SecretBox
    agent_id: str

    def __post_init__(self) -> None:
        self._opened: dict[str, str] = {}  # ciphertext -> plaintext, of the rows opened last

    def open(self, rows: AgentAuthRows) -> AuthProfiles:
        """The document; ``SecretKeyError`` naming the profile when the key does not open a secret."""
        known, seen = self._opened, {}

        def plain(token: str, what: str) -> str:
            text = known.get(token)
            seen[token] = text = self.box.open(token, what=what) if text is None else text
            return text

        profiles: dict[str, Credential] = {}
        for pid, row in rows.credentials.items():
            what = f"profile {pid} of agent {self.agent_id}"
            profiles[pid] = Credential(
                type=cast(CredentialType, row.type),
                provider=row.provider,
                secret=plain(row.secret, what),
                email=row.email,
                expires=row.expires,
                refresh=None if row.refresh is None else plain(row.refresh, what),
                extra=self._extra(None if row.extra is None else plain(row.extra, what), what),
            )
        self._opened = seen  # replaced, not mutated: a reload may be opening rows in another thread
        return AuthProfiles(
            profiles=profiles,
            order={provider: list(ids) for provider, ids in rows.order.items()},
            last_good=dict(rows.last_good),
            usage_stats={pid: self.stats(row, pid) for pid, row in rows.usage.items()},
            version=rows.version,
            extra=dict(rows.extra),
        )

    def stats(self, row: UsageRow, profile_id: str) -> UsageStats:
        try:
            return codec.decode_stats(row.stats, f'usageStats["{profile_id}"]')
        except ValueError as exc:
            raise AuthError(
                f"The auth state of agent {self.agent_id} in the database is invalid: {exc}."
            ) from None

    def _extra(self, text: str | None, what: str) -> dict[str, Any]:
        if text is None:
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise AuthError(f"The stored fields of {what} in the database are not an object.")
        return cast(dict[str, Any], value)

    def seal(self, doc: AuthProfiles, *, base_rows: AgentAuthRows, base_doc: AuthProfiles) -> AgentAuthRows:
        """The rows of ``doc``; what equals ``base_doc`` keeps its row from ``base_rows`` unchanged."""
        credentials: dict[str, SealedCredential] = {}
        for pid, cred in doc.profiles.items():
            same = base_doc.profiles.get(pid) == cred and pid in base_rows.credentials
            credentials[pid] = base_rows.credentials[pid] if same else self._seal_credential(cred)
        usage: dict[str, UsageRow] = {}
        for pid, stats in doc.usage_stats.items():
            base = base_rows.usage.get(pid)
            same = base is not None and base_doc.usage_stats.get(pid) == stats
            usage[pid] = base if same and base is not None else UsageRow(codec.encode_stats(stats))
        return AgentAuthRows(
            credentials=credentials,
            # Provider ids are case-insensitive (docs/failover.md §3); the tables hold them lower-case.
            order={provider.strip().lower(): list(ids) for provider, ids in doc.order.items()},
            last_good={provider.strip().lower(): pid for provider, pid in doc.last_good.items()},
            usage=usage,
            version=doc.version,
            extra=dict(doc.extra),
        )

    def _seal_credential(self, cred: Credential) -> SealedCredential:
        return SealedCredential(
            provider=cred.provider.strip().lower(),
            type=cred.type,
            secret=self.box.seal(cred.secret),
            refresh=None if cred.refresh is None else self.box.seal(cred.refresh),
            email=cred.email,
            expires=cred.expires,
            extra=self.box.seal(json.dumps(cred.extra, ensure_ascii=False)) if cred.extra else None,
        )
