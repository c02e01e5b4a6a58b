"""Where phones and kiosks reach the appliance: the host links and QR codes are built from.

Never the request's ``Host`` header: a client on the LAN can send any Host it likes, and a link
built from it (``Host: evil.example``) would send the customer's phone, and the key in the
link's fragment, elsewhere. The host is the configured ``[web] public_host``, else the address
the server is bound to when that is one address, else the machine's first LAN address (IPv4
first: what a phone on the studio Wi-Fi can reach without DNS), else its ``.local`` name.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

from appliance.web.tls import IPAddress, lan_addresses


@dataclass(frozen=True)
class PublicAddress:
    host: str  # a DNS name or an IP address (IPv6 without brackets)
    https_port: int
    http_port: int

    @property
    def _netloc_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def https(self, path: str) -> str:
        return f"https://{self._netloc_host}:{self.https_port}{path}"

    def http(self, path: str) -> str:
        return f"http://{self._netloc_host}:{self.http_port}{path}"


def choose_host(
    public_host: str,
    bind: str,
    addresses: Callable[[], list[IPAddress]] = lan_addresses,
) -> str:
    if public_host:
        return public_host
    try:
        bound = ipaddress.ip_address(bind)
    except ValueError:
        return bind  # bound to a name: that name
    if not bound.is_unspecified:
        return str(bound)
    found = addresses()
    if found:
        return str(found[0])
    return f"{socket.gethostname().split('.')[0].lower() or 'appliance'}.local"
