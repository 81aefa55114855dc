#!/usr/bin/env python3
"""Through the nginx TLS front (packaging/nginx-onepush.conf): a login and an
approval end to end (the phone signs with Python's cryptography), the admin
cookie is Secure behind TLS, and 2,000 slow clients sending one byte per
second do not stop a normal login from succeeding in under 1 s.

Usage: front.py HTTPS_BASE ONEPUSH_BIN ONEPUSH_CONFIG ; prints 'N passed, N failed'.
"""
import base64, hashlib, hmac, json, socket, ssl, struct, subprocess, sys, threading, time, urllib.request, urllib.error

import resource

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# The 2,000 slow clients hold a descriptor each; many machines start with a
# soft limit of 1,024.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft != resource.RLIM_INFINITY and _soft < 4096:
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096 if _hard == resource.RLIM_INFINITY else min(4096, _hard), _hard))

BASE, BIN, CONFIG = sys.argv[1], sys.argv[2], sys.argv[3]
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE
C, PW, TXPW = "1000000001", "login-pass-1", "tx-pass-123"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def call(method, path, body=None, headers=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = dict(headers or {})
    if data is not None and "Content-Type" not in h:
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, context=CTX, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), e.headers


def cli(*args, stdin=""):
    r = subprocess.run([BIN, *args, "--config", CONFIG], input=stdin, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


class Phone:
    def __init__(self):
        self.sk = Ed25519PrivateKey.generate()
        self.pk = b64(self.sk.public_key().public_bytes_raw())
        st, r, _ = call("POST", "/api/v1/device/provision", {"public_key": self.pk, "proof": b64(self.sk.sign(f"onepush-provision-v1\n{self.pk}".encode()))})
        assert st == 201, r
        self.token, self.secret = r["token_id"], r["otp_secret"]

    def otp(self, step):
        key = base64.b32decode(self.secret + "=" * (-len(self.secret) % 8))
        h = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
        o = h[-1] & 15
        return "%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)

    def signed(self, method, path_q, body=None):
        path = path_q.split("?")[0]
        data = json.dumps(body).encode() if body is not None else b""
        t = int(time.time())
        msg = f"onepush-device-v1\n{method}\n{path}\n{t}\n{hashlib.sha256(data).hexdigest()}"
        h = {"X-Onepush-Token": self.token, "X-Onepush-Time": str(t), "X-Onepush-Signature": b64(self.sk.sign(msg.encode()))}
        return call(method, path_q, headers=h, raw=data if body is not None else None) if body is not None else call(method, path_q, headers=h)

    def approve(self, cid):
        for _ in range(10):
            st, r, _ = self.signed("GET", "/api/v1/device/challenges?wait=5")
            assert st == 200, r
            for ch in r["challenges"]:
                if ch["challenge_id"] == cid:
                    dig = hashlib.sha256("".join(f"{l}\t{v}\n" for l, v in ch["display"]).encode()).hexdigest()
                    sig = b64(self.sk.sign(f"onepush-response-v1\n{cid}\n{self.token}\napprove\n\n{dig}".encode()))
                    st, r, _ = self.signed("POST", f"/api/v1/device/challenges/{cid}/response", {"token_id": self.token, "decision": "approve", "signature": sig})
                    assert st == 200, r
                    return r["status"], ch
        raise AssertionError("the challenge never reached the phone")


def setup():
    rp = {"Authorization": "Bearer " + cli("rp-key", "add", "bank")}
    cli("operator", "add", "alice", "--password-stdin", stdin="operator-pass-1")
    st, _, h = call("POST", "/api/v1/admin/session", {"username": "alice", "password": "operator-pass-1"})
    cookie = h["Set-Cookie"]
    assert st == 200 and "Secure" in cookie and "HttpOnly" in cookie, cookie
    adm = {"Cookie": cookie.split(";")[0]}
    assert call("POST", "/api/v1/admin/contracts", {"contract_no": C, "name": "TLS", "edition": "jweb"}, adm)[0] == 201
    for u in ("taro", "hanako"):
        assert call("POST", f"/api/v1/admin/contracts/{C}/users", {"user_id": u, "name": u, "role": "user", "password": PW, "transaction_password": TXPW}, adm)[0] == 201
    phone = Phone()
    step = int(time.time()) // 30
    st, r, _ = call("POST", "/api/v1/registrations", {"contract_no": C, "user_id": "taro", "password": PW, "token_id": phone.token, "otp1": phone.otp(step), "otp2": phone.otp(step + 1)})
    assert st == 201, r
    return rp, phone


def login_and_approval(rp, phone):
    st, r, _ = call("POST", "/api/v1/login", {"contract_no": C, "user_id": "taro", "password": PW}, rp)
    assert st == 200 and r["result"] == "challenge", r
    cid = r["challenge_id"]
    waiter = {}
    t = threading.Thread(target=lambda: waiter.update(r=call("GET", f"/api/v1/challenges/{cid}?wait=20", headers=rp)))
    t.start()
    time.sleep(0.3)
    status, _ = phone.approve(cid)
    t.join()
    assert status == "approved" and waiter["r"][1]["status"] == "approved", waiter
    st, r, _ = call("POST", "/api/v1/approvals", {"contract_no": C, "user_id": "taro", "kind": "transaction", "transaction_password": TXPW,
                                                  "display": [["Amount", "JPY 1,250,000"], ["Payee", "Mito Trading"]]}, rp)
    assert r["result"] == "challenge", r
    status, ch = phone.approve(r["challenge_id"])
    assert status == "approved" and ch["display"][1] == ["Payee", "Mito Trading"]
    assert call("GET", f"/api/v1/challenges/{r['challenge_id']}", headers=rp)[1]["status"] == "approved"


def slow_clients(rp, n=2000, secs=6):
    host, port = BASE.split("//")[1].split(":")
    conns = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=10)
        conns.append(CTX.wrap_socket(s, server_hostname=host))
    stop = time.time() + secs
    line = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    sent = [0] * n
    timings = []

    def trickle():
        while time.time() < stop:
            t0 = time.time()
            for i, c in enumerate(conns):
                try:
                    c.send(line[sent[i] % len(line):][:1])
                    sent[i] += 1
                except OSError:
                    pass
            time.sleep(max(0, 1 - (time.time() - t0)))

    th = threading.Thread(target=trickle)
    th.start()
    time.sleep(2)
    while time.time() < stop - 0.5:
        t0 = time.time()
        st, r, _ = call("POST", "/api/v1/login", {"contract_no": C, "user_id": "hanako", "password": PW}, rp)
        assert st == 200 and r["result"] == "allow", r
        timings.append(time.time() - t0)
        time.sleep(0.5)
    th.join()
    for c in conns:
        c.close()
    worst = max(timings)
    print(f"slow clients: {n} connections sending 1 byte/s for {secs} s; {len(timings)} logins meanwhile, slowest {worst * 1000:.0f} ms")
    assert worst < 1.0, timings


def main():
    passed = failed = 0
    rp = phone = None
    for name, fn in [("setup through TLS (Secure admin cookie)", lambda: None), ("login and approval through nginx", None), ("2,000 slow clients", None)]:
        try:
            if name.startswith("setup"):
                rp, phone = setup()
            elif name.startswith("login"):
                login_and_approval(rp, phone)
            else:
                slow_clients(rp)
            print("ok:", name)
            passed += 1
        except Exception as e:  # report, then fail
            print("FAILED:", name, repr(e))
            failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


main()
