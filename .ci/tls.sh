#!/usr/bin/env bash
# The packaged nginx TLS front on loopback, with a self-signed certificate
# made on the fly, before a real onepush; then tests/tls/front.py through it.
set -euo pipefail
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true; rm -rf "$dir"' EXIT
port_https=18443
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

cat > "$dir/onepush.toml" <<CFG
listen = "127.0.0.1:0"
data_dir = "$dir/data"
trusted_proxies = ["127.0.0.1"]
argon2_memory_kib = 1024
argon2_iterations = 1
CFG
target/release/onepush serve --config "$dir/onepush.toml" > "$dir/serve.out" 2> "$dir/serve.log" &
for _ in $(seq 100); do grep -q "listening on" "$dir/serve.out" 2>/dev/null && break; sleep 0.1; done
upstream=$(sed -n 's/^onepush listening on http:\/\///p' "$dir/serve.out")

# The packaged site config, pointed at this run's certificate, port and upstream.
sed -e "s|listen 443 ssl;|listen 127.0.0.1:$port_https ssl;|" -e '/listen \[::\]:443/d' \
    -e "s|/etc/ssl/certs/onepush.pem|$dir/cert.pem|" -e "s|/etc/ssl/private/onepush.key|$dir/key.pem|" \
    -e "s|server 127.0.0.1:8080;|server $upstream;|" packaging/nginx-onepush.conf > "$dir/site.conf"
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
nginx -c "$dir/nginx.conf" -p "$dir"
sleep 0.5
python3 tests/tls/front.py "https://127.0.0.1:$port_https" target/release/onepush "$dir/onepush.toml"
