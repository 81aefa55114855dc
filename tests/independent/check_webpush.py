#!/usr/bin/env python3
"""Checks a Web Push message that onepush really sent (RFC 8030, 8291, 8292;
API.md "Push to the phone") with an implementation that is not onepush's:
Python's `http_ece` decrypts it and `cryptography` verifies the VAPID JWT.
onepush encrypts and signs through the Rust `web-push`, `ece` and `p256`
crates; nothing here comes from them.

The capture is written by the integration test
`web_push_reaches_the_phone_encrypted_and_signed_with_vapid` (tests/api.rs):
the raw POST body and headers as an HTTPS receiver got them, the
subscription's private key and auth secret (made by the test, as a phone
would), and what API.md says to expect (the push-config VAPID key, the
challenge id, push_contact).

1. Content-Encoding is aes128gcm, Urgency high, TTL whole seconds 1..=60
   that match expires_at, the request is a POST to the endpoint's path.
2. http_ece decrypts the body with the subscription's key (RFC 8291); the
   plaintext is exactly {"challenge_id", "kind", "expires_at"} with the
   expected challenge id.
3. Authorization is `vapid t=<JWT>, k=<key>`: k is the push-config key, the
   JWT header says ES256, its signature (JOSE r||s) verifies against k, aud
   is the endpoint's origin, sub is push_contact, exp is after the capture
   and at most 24 h after it.

Usage: check_webpush.py CAPTURE.json ; prints one line, or names the
failure and exits 1.
"""
import base64, datetime, json, sys, urllib.parse

try:
    import http_ece
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
except ImportError as e:
    sys.exit(f"webpush: FAILED: {e} (python3 -m pip install http_ece cryptography)")


class Failed(Exception):
    pass


def need(cond, what):
    if not cond:
        raise Failed(what)


def b64d(s, what):
    need(isinstance(s, str) and "=" not in s, f"{what} is not base64url without padding: {s!r}")
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except Exception:
        raise Failed(f"{what} is not base64url: {s!r}")


def check_headers(c):
    h = c["headers"]
    need(h.get("content-encoding") == "aes128gcm", f"Content-Encoding is {h.get('content-encoding')!r}, not aes128gcm")
    need(h.get("urgency") == "high", f"Urgency is {h.get('urgency')!r}, not high")
    ttl = h.get("ttl")
    need(ttl is not None and ttl.isdigit(), f"TTL is not whole seconds: {ttl!r}")
    need(1 <= int(ttl) <= 60, f"TTL {ttl} is not in 1..=60")
    url = urllib.parse.urlsplit(c["endpoint"])
    need(c["request_line"].split(" ")[:2] == ["POST", url.path], f"request is {c['request_line']!r}, not POST {url.path}")
    return int(ttl)


def decrypt(c):
    sub = c["subscription"]
    d = int.from_bytes(b64d(sub["private_key"], "private_key"), "big")
    private_key = ec.derive_private_key(d, ec.SECP256R1())
    public = private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    need(public == b64d(sub["public_key"], "public_key") == b64d(sub["p256dh"], "p256dh"),
         "the subscription's private key does not match its p256dh")
    auth = b64d(sub["auth"], "auth")
    need(len(auth) == 16, f"auth is {len(auth)} bytes, not 16")
    body = b64d(c["body"], "body")
    # aes128gcm: salt(16) rs(4) idlen(1) keyid — the sender's ephemeral P-256 point (RFC 8291 section 4).
    need(len(body) > 21 and body[20] == 65, "the aes128gcm header does not carry a 65-byte sender key")
    try:
        # dh is taken from the header's keyid (the sender's key); version aes128gcm reads salt and rs there too.
        plain = http_ece.decrypt(body, private_key=private_key, auth_secret=auth, version="aes128gcm")
    except Exception as e:
        raise Failed(f"http_ece could not decrypt the body: {type(e).__name__}: {e}")
    try:
        payload = json.loads(plain)
    except ValueError:
        raise Failed(f"the plaintext is not JSON: {plain[:80]!r}")
    need(isinstance(payload, dict) and set(payload) == {"challenge_id", "kind", "expires_at"},
         f"the plaintext has keys {sorted(payload) if isinstance(payload, dict) else payload!r}, not challenge_id, kind, expires_at")
    need(payload["challenge_id"] == c["expected"]["challenge_id"],
         f"challenge_id {payload['challenge_id']!r}, expected {c['expected']['challenge_id']!r}")
    need(payload["kind"] == "login", f"kind {payload['kind']!r}, expected login")
    try:
        expires = datetime.datetime.fromisoformat(payload["expires_at"].replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        raise Failed(f"expires_at is not RFC 3339: {payload['expires_at']!r}")
    return expires


def check_vapid(c):
    authz = c["headers"].get("authorization") or ""
    scheme, _, params = authz.partition(" ")
    need(scheme == "vapid", f"Authorization is not `vapid t=..., k=...`: {authz[:40]!r}")
    fields = dict(p.strip().split("=", 1) for p in params.split(",") if "=" in p)
    need(set(fields) == {"t", "k"}, f"Authorization has {sorted(fields)}, not t and k")
    need(fields["k"] == c["expected"]["vapid_public_key"], "k is not the push-config vapid_public_key")
    k = b64d(fields["k"], "k")
    need(len(k) == 65 and k[0] == 4, "k is not a 65-byte uncompressed P-256 point")
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), k)
    parts = fields["t"].split(".")
    need(len(parts) == 3, "the JWT does not have three parts")
    header = json.loads(b64d(parts[0], "JWT header"))
    claims = json.loads(b64d(parts[1], "JWT claims"))
    need(header.get("alg") == "ES256", f"JWT alg is {header.get('alg')!r}, not ES256")
    sig = b64d(parts[2], "JWT signature")
    need(len(sig) == 64, f"the JWT signature is {len(sig)} bytes, not 64 (JOSE r||s)")
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        public.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Failed("the VAPID JWT signature does not verify against k")
    url = urllib.parse.urlsplit(c["endpoint"])
    origin = f"{url.scheme}://{url.netloc}"
    need(claims.get("aud") == origin, f"aud is {claims.get('aud')!r}, not the endpoint's origin {origin!r}")
    need(claims.get("sub") == c["expected"]["push_contact"], f"sub is {claims.get('sub')!r}, not {c['expected']['push_contact']!r}")
    exp = claims.get("exp")
    captured = c["captured_at_ms"] / 1000
    need(isinstance(exp, int), f"exp is not an integer: {exp!r}")
    need(captured < exp <= captured + 24 * 3600, f"exp is {exp - captured:.0f} s after the message, not in (0, 24 h]")


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__.rsplit("Usage: ", 1)[1].strip())
    try:
        with open(argv[1]) as f:
            c = json.load(f)
    except FileNotFoundError:
        sys.exit(f"webpush: FAILED: no capture at {argv[1]} (the test web_push_reaches_the_phone_encrypted_and_signed_with_vapid writes it)")
    except ValueError as e:
        sys.exit(f"webpush: FAILED: {argv[1]} is not JSON: {e}")
    try:
        ttl = check_headers(c)
        expires = decrypt(c)
        left = expires - c["captured_at_ms"] / 1000
        need(abs(ttl - left) <= 5, f"TTL {ttl} does not match expires_at ({left:.1f} s after the message)")
        check_vapid(c)
    except Failed as e:
        sys.exit(f"webpush: FAILED: {e}")
    except (KeyError, TypeError) as e:
        sys.exit(f"webpush: FAILED: the capture lacks or misshapes {e}")
    print("webpush: 1 capture checked: decrypted (http_ece), VAPID ES256 verified (cryptography)")
    print("webpush: 1 passed, 0 failed")


if __name__ == "__main__":
    main(sys.argv)
