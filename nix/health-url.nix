# The URL a host's own health check reaches a server at: the unspecified addresses by
# loopback, an IPv6 literal in brackets. Builtins only, so it is tested without nixpkgs.
host: port:
let
  address =
    if host == "0.0.0.0" then
      "127.0.0.1"
    else if host == "::" then
      "::1"
    else
      host;
  shown = if builtins.match ".*:.*" address != null then "[${address}]" else address;
in
"http://${shown}:${toString port}"
