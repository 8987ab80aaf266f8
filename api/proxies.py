"""X-Forwarded-* headers are believed only from the reverse proxies named in
EPU_TRUSTED_PROXIES (werkzeug's ProxyFix, one hop); from anybody else they are dropped, so a
client cannot choose the host or scheme of the links EPU gives back."""

from ipaddress import ip_address, ip_network

from werkzeug.middleware.proxy_fix import ProxyFix

FORWARDED = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
    "HTTP_FORWARDED",
)
PROXIED = "epu.behind_trusted_proxy"


class TrustedProxies:
    def __init__(self, app, trusted: tuple[str, ...]):
        self.app = app
        self.networks = [ip_network(item, strict=False) for item in trusted]
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)

    def __call__(self, environ, start_response):
        if self._trusted(environ.get("REMOTE_ADDR")):
            environ[PROXIED] = True
            return self.fixed(environ, start_response)
        for key in FORWARDED:
            environ.pop(key, None)
        return self.app(environ, start_response)

    def _trusted(self, address: str | None) -> bool:
        if not address or not self.networks:
            return False
        try:
            peer = ip_address(address)
        except ValueError:
            return False
        return any(peer in network for network in self.networks)
