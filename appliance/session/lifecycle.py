"""Customer sessions: the state machine, their contents, timeouts and the one wipe path.

``SessionManager`` owns every session. A session owns its encrypted workspace, its photos and
products (ids pointing at blobs), its one-time download links and its print job ids. Every way a
session ends (finish, timeouts, full workspace, operator, shutdown) goes through
``SessionManager.wipe``, which runs every step even when one fails and writes exactly one audit
event. Retention is configurable only downwards: there is deliberately no way to keep photos.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping

from appliance.session.audit import AuditLog
from appliance.session.state import (
    LEGAL_TRANSITIONS,
    LINK_STATES,
    PHOTO_STATES,
    PRODUCT_STATES,
    Download,
    DownloadLink,
    IllegalTransitionError,
    LinkInvalidError,
    RetentionPolicy,
    Session,
    SessionNotFoundError,
    SessionState,
    SessionStateError,
    StoredItem,
    WipeOutcome,
    WipeReason,
)
from appliance.session.workspace import SessionBudgetError, Workspace, WorkspaceClosedError

logger = logging.getLogger(__name__)


WipeHook = Callable[[Session], None]


class SessionManager:
    """Creates, finds, advances and wipes sessions. Thread-safe."""

    def __init__(
        self,
        workspace: Workspace,
        audit: AuditLog,
        *,
        retention: RetentionPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.workspace = workspace
        self.audit = audit
        self.retention = retention if retention is not None else RetentionPolicy()
        self._clock = clock
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}
        self._session_by_token: dict[str, str] = {}
        self._wipe_hooks: list[WipeHook] = []
        self._reaper: tuple[threading.Thread, threading.Event] | None = None

    # --- finding -------------------------------------------------------------------------------

    def find(self, session_id: str) -> Session | None:
        with self._lock:
            return self._sessions.get(session_id)

    def get(self, session_id: str) -> Session:
        session = self.find(session_id)
        if session is None:
            raise SessionNotFoundError(f"no live session {session_id}")
        return session

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def _live(self, session_id: str, allowed: frozenset[SessionState] | None = None) -> Session:
        session = self.get(session_id)
        if allowed is not None and session.state not in allowed:
            raise SessionStateError(
                f"not allowed while session {session_id} is {session.state} "
                f"(needs {' or '.join(sorted(allowed))})"
            )
        session.last_activity = self._clock()
        return session

    # --- creating and advancing ------------------------------------------------------------------

    def create(self, *, actor: str = "system") -> Session:
        session_id = secrets.token_urlsafe(18)  # 24 URL-safe characters, 144 random bits
        workspace = self.workspace.open_session(session_id)
        now = self._clock()
        session = Session(session_id, workspace, created_at=now, last_activity=now)
        with self._lock:
            self._sessions[session_id] = session
        try:
            self.audit.record("session.created", actor=actor, session=session_id)
        except BaseException:
            # An unaudited session must not exist: undo it without a second event.
            with self._lock:
                self._sessions.pop(session_id, None)
            workspace.wipe()
            raise
        return session

    def transition(
        self, session_id: str, target: SessionState, *, actor: str = "system"
    ) -> Session:
        """Move to ``target``. Finishing wipes at once unless a download link is still live."""
        with self._lock:
            session = self._live(session_id)
            current = session.state
            if target is SessionState.WIPED:
                raise IllegalTransitionError(
                    current, target, ": use SessionManager.wipe(session_id, reason)"
                )
            if target not in LEGAL_TRANSITIONS[current]:
                raise IllegalTransitionError(current, target)
            session.state = target
            if target is SessionState.FINISHED:
                session.finished_at = now = session.last_activity
                # The download window starts now: live links last exactly that long.
                for link in session.live_links(now):
                    link.expires_at = now + self.retention.download_window_s
            finished_without_links = target is SessionState.FINISHED and not session.live_links(
                session.last_activity
            )
        self.audit.record(
            "session.state", actor=actor, session=session_id, from_state=current, state=target
        )
        if finished_without_links:
            self.wipe(session_id, WipeReason.FINISHED, actor=actor)
        return session

    def finish(self, session_id: str, *, actor: str = "system") -> Session:
        return self.transition(session_id, SessionState.FINISHED, actor=actor)

    def touch(self, session_id: str) -> None:
        """Record activity (a button press, a page view) to hold off the idle timeout."""
        with self._lock:
            self._live(session_id)

    # --- contents --------------------------------------------------------------------------------

    def _store(
        self,
        session_id: str,
        data: bytes,
        metadata: Mapping[str, str | int | float] | None,
        allowed: frozenset[SessionState],
        kind: str,
    ) -> StoredItem:
        with self._lock:
            workspace = self._live(session_id, allowed).workspace
        try:
            blob = workspace.put(data)
        except SessionBudgetError:
            # Over its own budget: this session caused it and cannot deliver; end it cleanly.
            # A full *shared* workspace (WorkspaceFullError) only refuses the write: the session
            # keeps what it has, and no other customer's session is touched.
            self.wipe(session_id, WipeReason.WORKSPACE_FULL)
            raise
        item = StoredItem(secrets.token_urlsafe(9), blob, dict(metadata or {}))
        with self._lock:
            session = self._live(session_id)  # raises if wiped meanwhile (the wipe took the blob)
            (session.photos if kind == "photo" else session.products)[item.item_id] = item
        return item

    def add_photo(
        self, session_id: str, data: bytes, metadata: Mapping[str, str | int | float] | None = None
    ) -> StoredItem:
        """Store a captured or uploaded photo (only while capturing, i.e. after consent)."""
        return self._store(session_id, data, metadata, PHOTO_STATES, "photo")

    def add_product(
        self, session_id: str, data: bytes, metadata: Mapping[str, str | int | float] | None = None
    ) -> StoredItem:
        """Store a derived output (ID photo file, print sheet)."""
        return self._store(session_id, data, metadata, PRODUCT_STATES, "product")

    def read_photo(self, session_id: str, photo_id: str) -> bytes:
        with self._lock:
            session = self._live(session_id)
            item = session.photo(photo_id)
        return session.workspace.get(item.blob)

    def read_product(self, session_id: str, product_id: str) -> bytes:
        with self._lock:
            session = self._live(session_id)
            item = session.product(product_id)
        return session.workspace.get(item.blob)

    def discard_photo(self, session_id: str, photo_id: str) -> None:
        """Delete a photo now (a rejected retake) rather than at wipe."""
        with self._lock:
            session = self._live(session_id)
            item = session.photo(photo_id)
            del session.photos[photo_id]
        session.workspace.delete(item.blob)

    def add_print_job(self, session_id: str, job_id: str) -> None:
        """Remember a print job so the wipe hooks can cancel and purge it."""
        with self._lock:
            self._live(session_id).print_jobs.append(job_id)

    # --- one-time download links ------------------------------------------------------------

    def create_link(
        self,
        session_id: str,
        product_id: str,
        *,
        uses: int = 1,
        actor: str = "system",
        seal: Callable[[str], tuple[bytes, bytes]] | None = None,
    ) -> DownloadLink:
        """A link to one product. With ``seal``, ``seal(token) -> (ciphertext, delete_digest)``
        makes an end-to-end sealed link: the ciphertext is stored (encrypted again, in the
        session workspace) and is what a redemption returns; its key never reaches the manager.
        """
        if uses < 1:
            raise ValueError(f"a link needs at least one use, got {uses}")
        with self._lock:
            session = self._live(session_id, LINK_STATES)
            session.product(product_id)
        token = secrets.token_urlsafe(32)
        payload = delete_digest = None
        if seal is not None:
            ciphertext, delete_digest = seal(token)
            payload = session.workspace.put(ciphertext)
        with self._lock:
            session = self._live(session_id, LINK_STATES)  # raises if wiped while sealing
            expires_at = session.last_activity + self.retention.download_window_s
            link = DownloadLink(token, product_id, uses, expires_at, payload, delete_digest)
            session.links[link.token] = link
            self._session_by_token[link.token] = session_id
        self.audit.record("link.created", actor=actor, session=session_id, uses_left=uses)
        return link

    def _link(self, token: str) -> tuple[Session, DownloadLink] | None:
        session_id = self._session_by_token.get(token)
        session = self._sessions.get(session_id) if session_id else None
        link = session.links.get(token) if session else None
        if session is None or link is None:
            return None
        return session, link

    def link_is_valid(self, token: str) -> bool:
        """True if ``token`` would download now (does not use it up)."""
        with self._lock:
            found = self._link(token)
            return found is not None and found[1].is_live(self._clock())

    def redeem_link(self, token: str, *, actor: str = "system") -> Download:
        """Use one download of a link; wipes a finished session once its last link is used."""
        refusal = LinkInvalidError("this download link is not valid (used, expired or unknown)")
        with self._lock:
            found = self._link(token)
            if found is None:
                # Unknown tokens are not audited: guessing must not be able to flood the log.
                raise refusal
            session, link = found
            now = self._clock()
            live = link.is_live(now)
            if live:
                link.uses_left -= 1
                item = session.product(link.product_id)
                blob = link.payload if link.payload is not None else item.blob
                finished_and_done = session.state is SessionState.FINISHED and not (
                    session.live_links(now)
                )
        if not live:
            reason = "used_up" if link.uses_left <= 0 else "expired"
            self.audit.record(
                "link.refused",
                actor=actor,
                session=session.session_id,
                outcome="refused",
                reason=reason,
            )
            raise refusal
        try:
            data = session.workspace.get(blob)
        except WorkspaceClosedError:
            raise refusal from None  # wiped between the check and the read
        self.audit.record(
            "link.redeemed",
            actor=actor,
            session=session.session_id,
            uses_left=link.uses_left,
            bytes=len(data),
        )
        if finished_and_done:
            self.wipe(session.session_id, WipeReason.FINISHED, actor=actor)
        return Download(session.session_id, link.product_id, data, dict(item.metadata))

    def wipe_by_link(self, token: str, delete_secret: bytes) -> WipeOutcome:
        """ "Delete my photos now" from the customer's own link: the secret sealed inside the
        link's ciphertext proves the caller decrypted it (the token alone crossed the LAN in
        the clear). Works after the link is used up, until the session is gone."""
        refusal = LinkInvalidError("this download link is not valid (used, expired or unknown)")
        with self._lock:
            found = self._link(token)
            if found is None or found[1].delete_digest is None:
                raise refusal
            session, link = found
            expected = link.delete_digest
        assert expected is not None
        if not hmac.compare_digest(hashlib.sha256(delete_secret).digest(), expected):
            raise refusal
        return self.wipe(session.session_id, WipeReason.CUSTOMER_REQUEST, actor="customer")

    # --- wiping -------------------------------------------------------------------------------

    def add_wipe_hook(self, hook: WipeHook) -> None:
        """Run ``hook(session)`` at every wipe (e.g. purge the session's print jobs)."""
        with self._lock:
            self._wipe_hooks.append(hook)

    def wipe(self, session_id: str, reason: WipeReason, *, actor: str = "system") -> WipeOutcome:
        """The one wipe path. Every step runs even if an earlier one fails; idempotent."""
        reason = WipeReason(reason)
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is None:
                return WipeOutcome(session_id, reason, performed=False)
            # Out of the map first: from here on nothing can find or add to this session.
            previous_state, session.state, session.wipe_reason = (
                session.state,
                SessionState.WIPED,
                reason,
            )
            hooks = list(self._wipe_hooks)
        failed: list[str] = []
        counts = {
            "photos": len(session.photos),
            "products": len(session.products),
            "links": len(session.links),
            "print_jobs": len(session.print_jobs),
        }
        self._wipe_step(session_id, "workspace", failed, session.workspace.remove_files)
        self._wipe_step(session_id, "key", failed, session.workspace.drop_key)
        self._wipe_step(session_id, "links", failed, lambda: self._kill_links(session))
        hooks_failed = 0
        for hook in hooks:
            if not self._wipe_step(session_id, "hooks", failed, functools.partial(hook, session)):
                hooks_failed += 1
        steps = sorted(set(failed))
        extra: dict[str, str | int] = {"failed_steps": ",".join(steps)} if steps else {}
        if hooks_failed:
            extra["hooks_failed"] = hooks_failed
        audited = self._wipe_step(
            session_id,
            "audit",
            failed,
            lambda: self.audit.record(
                "session.wiped",
                actor=actor,
                session=session_id,
                reason=reason,
                outcome="partial" if steps else "ok",
                from_state=previous_state,
                **counts,
                **extra,
            ),
        )
        if not audited:
            steps.append("audit")
        return WipeOutcome(session_id, reason, performed=True, failed_steps=tuple(steps))

    @staticmethod
    def _wipe_step(
        session_id: str, step: str, failed: list[str], action: Callable[[], object]
    ) -> bool:
        try:
            action()
        except Exception as error:
            # Type name only: an exception message could carry job titles, paths or other
            # text this log must never hold.
            logger.error(
                "wipe of session %s: step %s failed (%s)", session_id, step, type(error).__name__
            )
            failed.append(step)
            return False
        return True

    def _kill_links(self, session: Session) -> None:
        with self._lock:
            for token, link in session.links.items():
                link.uses_left = 0
                self._session_by_token.pop(token, None)
            session.links.clear()

    def sweep_leftovers(self, *, actor: str = "system") -> int:
        """At startup: remove what a crash left in the workspace; audit it as one wipe event."""
        removed = self.workspace.sweep_leftovers()
        self.audit.record(
            "session.wiped",
            actor=actor,
            session=None,
            reason=WipeReason.STARTUP_SWEEP,
            count=removed,
        )
        return removed

    def tick(self, now: float | None = None) -> list[WipeOutcome]:
        """Wipe every session whose time is up. Call periodically (or use start_reaper)."""
        moment = self._clock() if now is None else now
        due: list[tuple[str, WipeReason]] = []
        with self._lock:
            for session in self._sessions.values():
                reason = self._expiry(session, moment)
                if reason is not None:
                    due.append((session.session_id, reason))
        return [self.wipe(session_id, reason) for session_id, reason in due]

    def _expiry(self, session: Session, now: float) -> WipeReason | None:
        policy = self.retention
        if now - session.created_at >= policy.max_lifetime_s:
            return WipeReason.MAX_LIFETIME
        if session.state is SessionState.FINISHED:
            assert session.finished_at is not None
            if now - session.finished_at >= policy.download_window_s:
                return WipeReason.DOWNLOAD_WINDOW_END
            return None if session.live_links(now) else WipeReason.FINISHED
        if now - session.last_activity >= policy.idle_timeout_s:
            return WipeReason.IDLE_TIMEOUT
        return None

    def shutdown(self) -> list[WipeOutcome]:
        """Stop the reaper and wipe every session."""
        self.stop_reaper()
        with self._lock:
            session_ids = list(self._sessions)
        return [self.wipe(session_id, WipeReason.SHUTDOWN) for session_id in session_ids]

    # --- background reaper --------------------------------------------------------------------

    def start_reaper(self, interval_s: float = 5.0) -> None:
        if self._reaper is not None:
            raise RuntimeError("the session reaper is already running")
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(interval_s):
                try:
                    self.tick()
                except Exception as error:
                    logger.error("session reaper tick failed (%s)", type(error).__name__)

        thread = threading.Thread(target=run, name="session-reaper", daemon=True)
        self._reaper = (thread, stop)
        thread.start()

    def stop_reaper(self, timeout_s: float = 5.0) -> None:
        if self._reaper is None:
            return
        thread, stop = self._reaper
        stop.set()
        thread.join(timeout_s)
        self._reaper = None
