-- Test Prosody: client connections on 127.0.40.2:15222 only; no s2s, HTTP, components or TLS
-- ports. Host custodian.test, no accounts.
pidfile = "@DIR@/jabber/prosody.pid"
daemonize = false
data_path = "@DIR@/jabber/data"
interfaces = { "127.0.40.2" }
local_interfaces = { "127.0.40.2" }
c2s_ports = { 15222 }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
s2s_direct_tls_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
log = { { levels = { min = "info" }, to = "console" } }
modules_enabled = { "disco", "ping", "saslauth", "tls", "posix" }
modules_disabled = { "s2s", "admin_shell", "http" }
c2s_require_encryption = false
authentication = "internal_hashed"
certificates = "@DIR@/jabber/certs"

VirtualHost "custodian.test"
