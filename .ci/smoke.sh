#!/usr/bin/env bash
# End to end with the companions in examples/: a real server, the reference
# authenticator (--auto approve) and the RP client. Loopback only, bounded.
set -euo pipefail
bin=target/release
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
cat > "$dir/onepush.toml" <<CFG
listen = "127.0.0.1:0"
data_dir = "$dir/data"
argon2_memory_kib = 1024
argon2_iterations = 1
CFG
$bin/onepush serve --config "$dir/onepush.toml" > "$dir/serve.out" 2> "$dir/serve.log" &
for _ in $(seq 100); do grep -q "listening on" "$dir/serve.out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/^onepush listening on //p' "$dir/serve.out")
echo "server at $base"

# Management commands go through the running server's control socket.
key=$($bin/onepush rp-key add bank --config "$dir/onepush.toml")
printf 'operator-pass-1' | $bin/onepush operator add alice --password-stdin --config "$dir/onepush.toml"
jar="$dir/cookies"
curl -sf -c "$jar" -H 'Content-Type: application/json' -d '{"username":"alice","password":"operator-pass-1"}' "$base/api/v1/admin/session" > /dev/null
curl -sf -b "$jar" -H 'Content-Type: application/json' -d '{"contract_no":"1000000001","name":"Mito Trading","edition":"jweb"}' "$base/api/v1/admin/contracts" > /dev/null
curl -sf -b "$jar" -H 'Content-Type: application/json' -d '{"user_id":"taro","name":"Taro","role":"user","password":"login-pass-1"}' "$base/api/v1/admin/contracts/1000000001/users" > /dev/null

# The phone: provision, then register with the two codes it shows.
$bin/examples/authenticator --server "$base" --state "$dir/phone.json" provision --label "smoke phone"
test "$(stat -c %a "$dir/phone.json")" = 600
token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token_id"])' "$dir/phone.json")
read -r otp1 otp2 < <($bin/examples/authenticator --state "$dir/phone.json" otp | sed -n 's/^OTP 1: \([0-9]*\) .*OTP 2 (the next code): \([0-9]*\) .*/\1 \2/p')
curl -sf -H 'Content-Type: application/json' \
  -d "{\"contract_no\":\"1000000001\",\"user_id\":\"taro\",\"password\":\"login-pass-1\",\"token_id\":\"$token\",\"otp1\":\"$otp1\",\"otp2\":\"$otp2\"}" \
  "$base/api/v1/registrations" | grep -q '"registration":"active"'
echo "registered $token"

# The phone approves what arrives; the RP client logs in and waits.
timeout 60 $bin/examples/authenticator --state "$dir/phone.json" watch --auto approve --once > "$dir/phone.out" &
sleep 0.5
timeout 60 $bin/examples/rp_client --server "$base" --key "$key" --contract 1000000001 --user taro --password login-pass-1 | tee "$dir/rp.out"
grep -q '^approved$' "$dir/rp.out"
wait %2 || true
grep -q "result: approved" "$dir/phone.out"
$bin/onepush audit verify --config "$dir/onepush.toml"
echo "smoke: 1 passed, 0 failed"
