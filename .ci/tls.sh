#!/usr/bin/env bash
# The packaged nginx TLS front on loopback, with a self-signed certificate
# made on the fly, before a real onepush configured with the packaged
# trusted_proxies; then tests/tls/front.py through it, and the front's own
# rules: the admin allow-list (403 from a client it does not allow, here
# 127.0.0.2), HSTS, no nginx version, and the client address onepush sees
# (X-Forwarded-For honoured and not spoofable, shown by the per-address
# provisioning rate limit).
set -euo pipefail
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true; rm -rf "$dir"' EXIT
port_https=18443
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

# The packaged config and the packaged site must agree out of the box: the
# site's upstream is onepush's default listen address, and the address
# nginx connects from is one onepush trusts.
site=packaging/nginx-onepush.conf
trusted=$(grep '^trusted_proxies = ' packaging/onepush.toml || true)
grep -q '^    server 127.0.0.1:8080;$' "$site" || { echo "FAILED: the packaged site's upstream is not 127.0.0.1:8080 (onepush's default listen)"; exit 1; }
case $trusted in *'"127.0.0.1"'*'"::1"'*) ;; *) echo "FAILED: packaging/onepush.toml does not trust the local front: $trusted"; exit 1 ;; esac

cat > "$dir/onepush.toml" <<CFG
listen = "127.0.0.1:0"
data_dir = "$dir/data"
argon2_memory_kib = 1024
argon2_iterations = 1
$trusted
CFG
target/release/onepush serve --config "$dir/onepush.toml" > "$dir/serve.out" 2> "$dir/serve.log" &
for _ in $(seq 100); do grep -q "listening on" "$dir/serve.out" 2>/dev/null && break; sleep 0.1; done
upstream=$(sed -n 's/^onepush listening on http:\/\///p' "$dir/serve.out")

# The packaged site config, pointed at this run's certificate, port and upstream.
sed -e "s|listen 443 ssl;|listen 127.0.0.1:$port_https ssl;|" -e '/listen \[::\]:443/d' \
    -e "s|/etc/ssl/certs/onepush.pem|$dir/cert.pem|" -e "s|/etc/ssl/private/onepush.key|$dir/key.pem|" \
    -e "s|server 127.0.0.1:8080;|server $upstream;|" "$site" > "$dir/site.conf"
cat > "$dir/nginx.conf" <<NGX
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    include $dir/site.conf;
}
NGX
nginx -t -c "$dir/nginx.conf" -p "$dir" 2>&1 | tail -1
# What nginx actually loaded (nginx -T), besides the behaviour checked below.
nginx -T -c "$dir/nginx.conf" -p "$dir" 2>/dev/null > "$dir/effective.conf"
for rule in 'server_tokens off;' \
            'add_header Strict-Transport-Security "max-age=31536000" always;' \
            'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;' \
            'proxy_set_header X-Forwarded-Proto $scheme;' \
            'location ~ ^/(?:admin|metrics)$|^/api/v1/admin/ {' \
            'allow 127.0.0.1;' 'allow ::1;' 'deny  all;'; do
  grep -qF -- "$rule" "$dir/effective.conf" || { echo "FAILED: nginx -T lacks: $rule"; exit 1; }
done
echo "nginx -T: allow-list, HSTS, server_tokens off and the forwarded headers are loaded"
nginx -c "$dir/nginx.conf" -p "$dir"
sleep 0.5
python3 tests/tls/front.py "https://127.0.0.1:$port_https" target/release/onepush "$dir/onepush.toml"

python3 - "127.0.0.1" "$port_https" <<'PY'
"""The front's own rules, from an allowed client (127.0.0.1) and from one
the allow-list does not name (127.0.0.2, also on loopback)."""
import base64, http.client, json, socket, ssl, sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HOST, PORT = sys.argv[1], int(sys.argv[2])
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE
OTHER = "127.0.0.2"


def call(method, path, source="127.0.0.1", body=None, headers=None):
    c = http.client.HTTPSConnection(HOST, PORT, context=CTX, timeout=10, source_address=(source, 0))
    h = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, r.headers


def provision(source, headers=None):
    sk = Ed25519PrivateKey.generate()
    pk = base64.urlsafe_b64encode(sk.public_key().public_bytes_raw()).rstrip(b"=").decode()
    proof = base64.urlsafe_b64encode(sk.sign(f"onepush-provision-v1\n{pk}".encode())).rstrip(b"=").decode()
    return call("POST", "/api/v1/device/provision", source, {"public_key": pk, "proof": proof}, headers)[0]


def headers_of_the_front():
    for path, want in [("/healthz", 200), ("/no-such-page", 404), ("/metrics", 200)]:
        st, h = call("GET", path)
        assert st == want, (path, st)
        assert h["Strict-Transport-Security"] == "max-age=31536000", (path, h["Strict-Transport-Security"])
        assert h["Server"] == "nginx", (path, h["Server"])


def allowed_client_reaches_admin():
    for path in ("/metrics", "/admin"):
        st, _ = call("GET", path)
        assert st == 200, (path, st)


def other_client_gets_403():
    for method, path in [("GET", "/metrics"), ("GET", "/admin"), ("GET", "//admin"), ("GET", "/%61dmin"),
                         ("HEAD", "/metrics"), ("GET", "/api/v1/admin/contracts"), ("POST", "/api/v1/admin/session"),
                         ("POST", "/api/v1/admin/bootstrap")]:
        st, h = call(method, path, OTHER, {} if method == "POST" else None)
        assert st == 403, (method, path, st)
        assert h["Strict-Transport-Security"] == "max-age=31536000" and h["Server"] == "nginx", dict(h)
    # The public API still answers it.
    assert call("GET", "/api/v1/status", OTHER)[0] == 200


def client_address_is_the_real_one():
    # 25 clients, each from its own address, are 25 clients: past the limit
    # of 20 per address they would be throttled as one if onepush saw only
    # the front.
    for n in range(10, 35):
        st = provision(f"127.0.0.{n}")
        assert st == 201, (n, st)
    # 20 provisionings per address per 10 minutes (API.md). Were every client
    # the front's 127.0.0.1, the 127.0.0.1 one below would be refused too.
    for i in range(20):
        st = provision(OTHER)
        assert st == 201, (i, st)
    assert provision(OTHER) == 429
    # A client cannot pick its address: nginx appends the one it saw and
    # onepush reads only that last entry.
    assert provision(OTHER, {"X-Forwarded-For": "127.0.0.1"}) == 429
    assert provision("127.0.0.1") == 201


def main():
    try:
        socket.create_connection((HOST, PORT), source_address=(OTHER, 0)).close()
        other = True
    except OSError as e:
        print(f"cannot connect from {OTHER} ({e}): the checks from a non-allowed address are skipped")
        other = False
    checks = [("HSTS and Server: nginx without a version", headers_of_the_front),
              ("the allow-listed client reaches /metrics and /admin", allowed_client_reaches_admin)]
    if other:
        checks += [(f"{OTHER} gets 403 for /admin, /api/v1/admin/ and /metrics", other_client_gets_403),
                   ("onepush sees the client's address through the front (rate limit per client, X-Forwarded-For not spoofable)",
                    client_address_is_the_real_one)]
    passed = failed = 0
    for name, fn in checks:
        try:
            fn()
            print("ok:", name)
            passed += 1
        except Exception as e:  # report, then fail
            print("FAILED:", name, repr(e))
            failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


main()
PY
