#!/usr/bin/env python3
"""Checks onepush's signed-message formats against an independent
implementation: Python's `cryptography` (Ed25519) and the standard library
(SHA-256, HMAC-SHA1 TOTP). Messages are rebuilt here from API.md's text, not
taken from the Rust code.

1. The shared test vectors: signing API.md's messages with the vector seed
   reproduces every signature (Ed25519 is deterministic).
2. onepush's own output (examples/emit_vectors.rs, a fresh random key):
   every signature verifies, the digest and the TOTP code match.

Usage: check_vectors.py VECTORS.json EMITTED.json ; prints '2 passed, 0 failed'.
"""
import base64, hashlib, hmac, json, struct, sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def digest(lines):
    return hashlib.sha256("".join(f"{l}\t{v}\n" for l, v in lines).encode()).hexdigest()


def device_msg(method, path, t, body):
    return f"onepush-device-v1\n{method}\n{path}\n{t}\n{hashlib.sha256(body.encode()).hexdigest()}"


def response_msg(cid, tid, decision, number, dig):
    return f"onepush-response-v1\n{cid}\n{tid}\n{decision}\n{number or ''}\n{dig}"


def totp(secret_b32, t):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    h = hmac.new(key, struct.pack(">Q", t // 30), hashlib.sha1).digest()
    o = h[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


def check_shared(v):
    sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["ed25519"]["private_seed_hex"]))
    pk = b64e(sk.public_key().public_bytes_raw())
    assert pk == v["ed25519"]["public_key_b64url"]
    msgs = [
        (f"onepush-provision-v1\n{pk}", v["provision_proof"]),
        (device_msg("GET", v["device_request_get"]["path"], v["device_request_get"]["time"], ""), v["device_request_get"]),
        (device_msg("POST", v["device_request_post"]["path"], v["device_request_post"]["time"], v["device_request_post"]["body"]), v["device_request_post"]),
    ]
    d = digest(v["display_digest"]["display"])
    assert d == v["display_digest"]["digest_hex"]
    msgs.append((response_msg("ch_0123456789abcdef", "ONEP12345674", "approve", None, d), v["response_signature"]))
    msgs.append((response_msg("ch_0123456789abcdef", "ONEP12345674", "approve", "42", d), v["response_signature_with_number"]))
    for text, case in msgs:
        assert text == case["message"], (text, case["message"])
        assert b64e(sk.sign(text.encode())) == case["signature"]
    for c in v["totp_sha1_6_digits"]["cases"]:
        assert totp(v["totp_sha1_6_digits"]["secret_base32"], c["unix_time"]) == c["otp"]


def check_emitted(e):
    pk = Ed25519PublicKey.from_public_bytes(b64d(e["public_key"]))
    pk.verify(b64d(e["provision"]["proof"]), f"onepush-provision-v1\n{e['public_key']}".encode())
    d = e["device"]
    pk.verify(b64d(d["signature"]), device_msg(d["method"], d["path"], d["time"], d["body"]).encode())
    r = e["response"]
    assert digest(r["display"]) == r["display_digest"]
    pk.verify(b64d(r["signature"]), response_msg(r["challenge_id"], r["token_id"], r["decision"], r["number"], r["display_digest"]).encode())
    assert totp(e["totp"]["secret_base32"], e["totp"]["time"]) == e["totp"]["otp"]


def main():
    passed = failed = 0
    for name, fn, path in [("shared vectors", check_shared, sys.argv[1]), ("onepush output", check_emitted, sys.argv[2])]:
        try:
            fn(json.load(open(path)))
            print(f"ok: {name}")
            passed += 1
        except Exception as ex:  # report every failure, then fail
            print(f"FAILED: {name}: {ex!r}")
            failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


main()
