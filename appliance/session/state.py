"""Session state: the state machine, the retention limits and the records a session holds.

Plain data with no I/O, split from :mod:`appliance.session.lifecycle` (which owns the behaviour)
to keep each module small. Import these names from here or from :mod:`appliance.session`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from appliance.config import MAX_DOWNLOAD_WINDOW_S, MAX_IDLE_TIMEOUT_S, MAX_SESSION_LIFETIME_S
from appliance.errors import ApplianceError
from appliance.session.workspace import BlobRef, SessionWorkspace


class SessionState(StrEnum):
    STARTED = "started"
    CONSENTED = "consented"
    CAPTURING = "capturing"
    REVIEWING = "reviewing"
    DELIVERING = "delivering"
    FINISHED = "finished"
    WIPED = "wiped"


_S = SessionState
# Every state may also go to WIPED, but only through SessionManager.wipe.
LEGAL_TRANSITIONS: Mapping[SessionState, frozenset[SessionState]] = {
    _S.STARTED: frozenset({_S.CONSENTED}),
    _S.CONSENTED: frozenset({_S.CAPTURING}),
    _S.CAPTURING: frozenset({_S.REVIEWING}),
    _S.REVIEWING: frozenset({_S.CAPTURING, _S.DELIVERING}),  # back to capturing = retake
    _S.DELIVERING: frozenset({_S.REVIEWING, _S.FINISHED}),  # another product, or done
    _S.FINISHED: frozenset(),
    _S.WIPED: frozenset(),
}
# Photos only after consent; links only once the customer is being served.
PHOTO_STATES = frozenset({_S.CAPTURING})
PRODUCT_STATES = frozenset({_S.CAPTURING, _S.REVIEWING, _S.DELIVERING})
LINK_STATES = frozenset({_S.DELIVERING})


class WipeReason(StrEnum):
    FINISHED = "finished"
    IDLE_TIMEOUT = "idle_timeout"
    MAX_LIFETIME = "max_lifetime"
    DOWNLOAD_WINDOW_END = "download_window_end"
    SHUTDOWN = "shutdown"
    STARTUP_SWEEP = "startup_sweep"
    WORKSPACE_FULL = "workspace_full"
    OPERATOR = "operator"
    CUSTOMER_REQUEST = "customer_request"  # "Delete my photos now" (GDPR art. 17)


class SessionStateError(ApplianceError, ValueError):
    """The operation is not allowed in the session's current state."""


class IllegalTransitionError(SessionStateError):
    """The requested state does not follow from the current one."""

    def __init__(self, current: SessionState, requested: SessionState, hint: str = "") -> None:
        self.current = current
        self.requested = requested
        allowed = ", ".join(sorted(LEGAL_TRANSITIONS[current])) or "none"
        super().__init__(
            f"cannot go from {current} to {requested} (allowed from {current}: {allowed}){hint}"
        )


class SessionNotFoundError(ApplianceError, LookupError):
    """No live session with that id (it never existed or was wiped)."""


class ItemNotFoundError(ApplianceError, LookupError):
    """No photo or product with that id in the session."""


class LinkInvalidError(ApplianceError, PermissionError):
    """A download link that is unknown, used up, expired or belongs to a wiped session."""


class RetentionTooLongError(ApplianceError, ValueError):
    """A retention setting above the built-in maximum: photos may only be kept shorter."""


@dataclass(frozen=True)
class RetentionPolicy:
    """Seconds; each may be lowered from its default (the config ceiling) but never raised."""

    idle_timeout_s: float = MAX_IDLE_TIMEOUT_S
    max_lifetime_s: float = MAX_SESSION_LIFETIME_S
    download_window_s: float = MAX_DOWNLOAD_WINDOW_S

    def __post_init__(self) -> None:
        ceilings = {
            "idle_timeout_s": MAX_IDLE_TIMEOUT_S,
            "max_lifetime_s": MAX_SESSION_LIFETIME_S,
            "download_window_s": MAX_DOWNLOAD_WINDOW_S,
        }
        for name, maximum in ceilings.items():
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"retention {name} must be positive, got {value}")
            if value > maximum:
                raise RetentionTooLongError(
                    f"retention {name} = {value} is above the maximum of {maximum:g} s: the "
                    "appliance keeps nothing longer (there is no keep option); lower it or "
                    "leave it unset"
                )


@dataclass
class StoredItem:
    """A photo or product: an id, its encrypted blob and small metadata (never user text)."""

    item_id: str
    blob: BlobRef
    metadata: dict[str, str | int | float]


@dataclass
class DownloadLink:
    token: str
    product_id: str
    uses_left: int
    expires_at: float  # manager clock (monotonic)
    # An end-to-end sealed link: the ciphertext the customer fetches (the key is in the URL
    # fragment only) and the SHA-256 of the deletion secret sealed inside it.
    payload: BlobRef | None = None
    delete_digest: bytes | None = None

    def is_live(self, now: float) -> bool:
        return self.uses_left > 0 and now < self.expires_at


@dataclass(frozen=True)
class Download:
    session_id: str
    product_id: str
    data: bytes
    metadata: Mapping[str, str | int | float]


@dataclass(frozen=True)
class WipeOutcome:
    session_id: str
    reason: WipeReason
    performed: bool  # False when the session was already wiped or never existed
    failed_steps: tuple[str, ...] = ()


@dataclass(eq=False)
class Session:
    """One customer's session. Read freely; change only through the SessionManager."""

    session_id: str
    workspace: SessionWorkspace
    created_at: float
    last_activity: float
    state: SessionState = SessionState.STARTED
    finished_at: float | None = None
    photos: dict[str, StoredItem] = field(default_factory=dict)
    products: dict[str, StoredItem] = field(default_factory=dict)
    links: dict[str, DownloadLink] = field(default_factory=dict)
    print_jobs: list[str] = field(default_factory=list)
    wipe_reason: WipeReason | None = None

    def photo(self, photo_id: str) -> StoredItem:
        return _item(self.photos, photo_id, "photo")

    def product(self, product_id: str) -> StoredItem:
        return _item(self.products, product_id, "product")

    def live_links(self, now: float) -> list[DownloadLink]:
        return [link for link in self.links.values() if link.is_live(now)]


def _item(items: Mapping[str, StoredItem], item_id: str, kind: str) -> StoredItem:
    try:
        return items[item_id]
    except KeyError:
        raise ItemNotFoundError(f"no {kind} {item_id} in this session") from None
