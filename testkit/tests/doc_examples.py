"""Recomputes every worked example of docs/PROTOCOL.md, docs/EVENT_ENVELOPE.md, the node
history of docs/API.md and docs/LEDGER.md from its inputs with Python's standard library and `cryptography` (Ed25519) - a
second implementation of the documented rules, independent of the Rust code. Run by
testkit/tests/doc_examples.rs.

Usage: doc_examples.py DOCS_DIR. Prints one line per checked value; exits 1 naming the first
value that differs from what the rules give.

Usage: doc_examples.py --verify-ledger LOG_DIR PUBLIC_KEY. Verifies the ledger in LOG_DIR
(sovereign-scans.jsonl, PROOFCHAIN.jsonl, ROOT.txt) as docs/LEDGER.md "Verifying it by hand"
says, trusting only PUBLIC_KEY (base64 Ed25519); exits 1 naming the first problem.

The values are read from the markdown: fenced blocks whose info string is
`<language> example=<name>`, and bullet lines `- <label>: `<value>``.
"""

import base64
import hashlib
import json
import re
import sys

import hmac

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class Doc:
    def __init__(self, path):
        self.path = path
        with open(path, encoding="utf-8") as f:
            self.text = f.read()
        self.blocks = {
            m.group(1): m.group(2)
            for m in re.finditer(r"^```\w+ example=([\w-]+)\n(.*?)\n```$", self.text, re.M | re.S)
        }
        self.values = {
            m.group(1): m.group(2) for m in re.finditer(r"^- ([^:`\n]+): `([^`\n]+)`$", self.text, re.M)
        }

    def block(self, name):
        if name not in self.blocks:
            fail(f"{self.path} has no block `example={name}`")
        return self.blocks[name]

    def value(self, label):
        if label not in self.values:
            fail(f"{self.path} has no line `- {label}: ...`")
        return self.values[label]


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def same(what, printed, computed):
    if printed != computed:
        fail(f"{what}: the document prints {printed!r} but the rules give {computed!r}")
    print(f"ok: {what}")


def jcs(value):
    """RFC 8785 for the values the examples hold (no floating-point numbers)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # json.dumps escapes exactly what RFC 8785 escapes when ensure_ascii is off.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    if isinstance(value, dict):
        names = sorted(value, key=lambda k: k.encode("utf-16-be"))  # UTF-16 code units
        return "{" + ",".join(jcs(k) + ":" + jcs(value[k]) for k in names) + "}"
    fail(f"no JCS rule here for {value!r} (floats are not used in the examples)")


def key(seed_b64):
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed_b64))


def public_b64(private):
    return base64.b64encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def sign(private, message):
    return base64.b64encode(private.sign(message)).decode()


def verify(public_b64_text, signature_b64, message, what):
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64_text))
    try:
        public.verify(base64.b64decode(signature_b64), message)
    except Exception:
        fail(f"{what} does not verify with the printed public key")
    print(f"ok: {what} verifies")


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def request_message(method, path, node, timestamp, body):
    return "\n".join(["vaultmesh-request-v1", method, path, node, str(timestamp), sha256_hex(body)])


P25519 = 2**255 - 19


def curve25519_point(ed_public):
    """The Curve25519 u-coordinate of an Ed25519 public key: u = (1 + y) / (1 - y)."""
    y = int.from_bytes(ed_public, "little") & ((1 << 255) - 1)
    return ((1 + y) * pow(1 - y, P25519 - 2, P25519) % P25519).to_bytes(32, "little")


def x25519_private(seed):
    """The X25519 private key of an Ed25519 seed: the first half of SHA-512(seed)."""
    return X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32])


def mac_message(method, path, node, timestamp, session, body):
    return "\n".join(
        ["vaultmesh-request-mac-v1", method, path, node, str(timestamp), session, sha256_hex(body)]
    )


def protocol(doc):
    node = key(doc.value("node key seed"))
    same("node public key", doc.value("node public key"), public_b64(node))
    cc = key(doc.value("command center key seed"))
    cc_public = public_b64(cc)
    same("command center public key", doc.value("command center public key"), cc_public)
    same(
        "command center key id",
        doc.value("command center key id"),
        sha256_hex(base64.b64decode(cc_public))[:16],
    )
    node_public = doc.value("node public key")
    node_id = "550e8400-e29b-41d4-a716-446655440000"

    # A signed request.
    body = doc.value("heartbeat body").encode()
    same("heartbeat body sha256", doc.value("heartbeat body sha256"), sha256_hex(body))
    message = request_message("POST", "/api/agent/heartbeat", node_id, 1764410400, body)
    same("heartbeat message", doc.block("heartbeat-message"), message)
    same("heartbeat signature", doc.value("heartbeat signature"), sign(node, message.encode()))
    verify(node_public, doc.value("heartbeat signature"), message.encode(), "heartbeat signature")

    # A session MAC: both sides derive the same secret, the session key from it, the MAC.
    node_seed = base64.b64decode(doc.value("node key seed"))
    cc_seed = base64.b64decode(doc.value("command center key seed"))
    secret = x25519_private(node_seed).exchange(
        X25519PublicKey.from_public_bytes(curve25519_point(base64.b64decode(cc_public)))
    )
    secret_cc = x25519_private(cc_seed).exchange(
        X25519PublicKey.from_public_bytes(curve25519_point(base64.b64decode(node_public)))
    )
    same("shared secret, both sides", secret.hex(), secret_cc.hex())
    same("shared secret (hex)", doc.value("shared secret (hex)"), secret.hex())
    session = doc.value("command center key id") + ".1764410400.00112233445566778899aabbccddeeff"
    same("session id", doc.value("session id"), session)
    info = f"vaultmesh-session-v1\n{node_id}\n{session}".encode()
    session_key = HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(secret)
    same("session key (hex)", doc.value("session key (hex)"), session_key.hex())
    message = mac_message("POST", "/api/agent/heartbeat", node_id, 1764410460, session, body)
    same("heartbeat MAC message", doc.block("heartbeat-mac-message"), message)
    mac = base64.b64encode(hmac.new(session_key, message.encode(), hashlib.sha256).digest()).decode()
    same("heartbeat MAC", doc.value("heartbeat MAC"), mac)

    # An enrollment: signed with the key it enrolls, which it names.
    body = doc.block("enroll-body").encode()
    enroll = json.loads(body)
    same("enrollment public_key", enroll["public_key"], node_public)
    message = request_message("POST", "/api/agent/enroll", enroll["node_id"], 1764410400, body)
    same("enroll message", doc.block("enroll-message"), message)
    same("enroll signature", doc.value("enroll signature"), sign(node, message.encode()))

    # An event from a node: a signed request like any other, to a path with a nonce; the body
    # names neither the node nor an author (the Command Center sets both to the signing node).
    body = doc.block("event-body").encode()
    event = json.loads(body)
    same("event kind", event["kind"] in ("note", "incident"), True)
    same("event names no node or author", "node_id" in event or "author" in event, False)
    path = "/api/agent/events?nonce=5f0e3c1a9b7d4e2f"
    message = request_message("POST", path, node_id, 1764410400, body)
    same("event message", doc.block("event-message"), message)
    same("event signature", doc.value("event signature"), sign(node, message.encode()))
    verify(node_public, doc.value("event signature"), message.encode(), "event signature")
    request = doc.block("event-request").split("\n\n", 1)
    headers = dict(line.split(": ", 1) for line in request[0].split("\n")[1:])
    same("event request line", request[0].split("\n")[0], f"POST {path} HTTP/1.1")
    same("event request body", request[1].encode(), body)
    same("event request length", int(headers["Content-Length"]), len(body))
    same("event request node", headers["X-VaultMesh-Node"], node_id)
    same("event request timestamp", headers["X-VaultMesh-Timestamp"], "1764410400")
    same("event request signature", headers["X-VaultMesh-Signature"], doc.value("event signature"))

    # A command: signed by the Command Center over the JCS of the object.
    command = json.loads(doc.block("command"))
    command_jcs = jcs(command).encode()
    same("command JCS", doc.block("command-jcs"), command_jcs.decode())
    message = b"vaultmesh-command-v1\n" + command_jcs
    same("command signature", doc.value("command signature"), sign(cc, message))
    verify(cc_public, doc.value("command signature"), message, "command signature")

    # Two receipts: signed by the node over the JCS of each object, chained by its SHA-256.
    previous = None
    for n in (1, 2):
        receipt = json.loads(doc.block(f"receipt-{n}"))
        same(f"receipt {n} output_sha256", receipt["output_sha256"], sha256_hex(receipt["output"].encode()))
        same(f"receipt {n} prev_receipt_sha256", receipt["prev_receipt_sha256"], previous)
        receipt_jcs = jcs(receipt).encode()
        same(f"receipt {n} JCS", doc.block(f"receipt-{n}-jcs"), receipt_jcs.decode())
        message = b"vaultmesh-receipt-v1\n" + receipt_jcs
        same(f"receipt {n} signature", doc.value(f"receipt {n} signature"), sign(node, message))
        verify(node_public, doc.value(f"receipt {n} signature"), message, f"receipt {n} signature")
        previous = sha256_hex(receipt_jcs)
        same(f"receipt {n} chain hash", doc.value(f"receipt {n} chain hash"), previous)
    same("the first receipt answers the command", json.loads(doc.block("receipt-1"))["command_id"], command["command_id"])


def event_envelope(doc):
    envelope = json.loads(doc.block("event-envelope"))
    claimed = envelope.pop("hash")
    envelope_jcs = jcs(envelope)
    same("envelope JCS", doc.block("event-envelope-jcs"), envelope_jcs)
    digest = sha256_hex(envelope_jcs.encode())
    same("envelope hash", doc.value("envelope hash"), digest)
    same("envelope hash member", claimed, digest)


def unix(text):
    from datetime import datetime
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def history(doc):
    """The 5-minute tier and the 24h range's points from raw samples, as API.md#node-history says."""
    samples = json.loads(doc.block("history-samples"))
    answer = json.loads(doc.block("history-answer"))
    resolutions = [15, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 86400, 172800]
    range_secs, tier_width = 86400, 300
    width = next(w for w in resolutions if w >= tier_width and -(-range_secs // w) <= 300)
    same("history resolution", answer["resolution_secs"], width)
    slots = {}
    for received_at, value in samples:
        t = unix(received_at)
        slot = t - t % width
        lo, hi, total, n = slots.get(slot, (value, value, 0.0, 0))
        slots[slot] = (min(lo, value), max(hi, value), total + value, n + 1)
    from datetime import datetime, timezone
    points = [
        {
            "t": datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "min": round(lo, 3),
            "avg": round(total / n, 3),
            "max": round(hi, 3),
            "n": n,
        }
        for t, (lo, hi, total, n) in sorted(slots.items())
    ]
    same("history points", answer["series"][0]["points"], points)
    same("history from", unix(answer["from"]), unix(answer["to"]) - range_secs)


# The ledger (docs/LEDGER.md): RFC 9162 Merkle trees, C2SP signed notes, PROOFCHAIN.jsonl.


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n):
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def tree_hash(leaves):
    """RFC 9162 2.1.1: the Merkle Tree Hash of a list of leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node_hash(tree_hash(leaves[:k]), tree_hash(leaves[k:]))


def inclusion(m, leaves):
    """RFC 9162 2.1.3.1: the inclusion proof of leaf m."""
    if len(leaves) <= 1:
        return []
    k = split(len(leaves))
    if m < k:
        return inclusion(m, leaves[:k]) + [tree_hash(leaves[k:])]
    return inclusion(m - k, leaves[k:]) + [tree_hash(leaves[:k])]


def consistency(m, leaves):
    """RFC 9162 2.1.4.1: the consistency proof from the first m leaves to all."""

    def sub(m, leaves, complete):
        n = len(leaves)
        if m == n:
            return [] if complete else [tree_hash(leaves)]
        k = split(n)
        if m <= k:
            return sub(m, leaves[:k], complete) + [tree_hash(leaves[k:])]
        return sub(m - k, leaves[k:], False) + [tree_hash(leaves[:k])]

    return sub(m, leaves, True) if 0 < m < len(leaves) else []


def verify_consistency(m, n, root_m, root_n, proof):
    """RFC 9162 2.1.4.2, for 0 < m < n."""
    if not proof:
        return False
    path = ([root_m] if m & (m - 1) == 0 else []) + proof
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == root_m and sr == root_n


def key_id(name, public):
    """C2SP signed-note key id of an Ed25519 key: SHA-256(name || "\\n" || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]


def verifier_key(name, public):
    encoded = base64.b64encode(b"\x01" + public).decode()
    return f"{name}+{key_id(name, public).hex()}+{encoded}"


def checkpoint_body(origin, size, root):
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def signed_note(private, origin, size, root):
    body = checkpoint_body(origin, size, root)
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    blob = key_id(origin, public) + private.sign(body.encode())
    return f"{body}\n\u2014 {origin} {base64.b64encode(blob).decode()}\n"


def open_note(note, origin, public, where):
    """Verifies a signed note by (origin, public); returns (size, root)."""
    lines = note.split("\n")
    if len(lines) != 6 or lines[3] != "" or lines[5] != "" or lines[0] != origin:
        fail(f"{where}: not a one-signature note of {origin}")
    prefix = f"\u2014 {origin} "
    if not lines[4].startswith(prefix):
        fail(f"{where}: the signature line does not name {origin}")
    blob = base64.b64decode(lines[4][len(prefix):])
    if blob[:4] != key_id(origin, public):
        fail(f"{where}: signed by another key id")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], "\n".join(lines[:3]).encode() + b"\n")
    except Exception:
        fail(f"{where}: the signature does not verify")
    return int(lines[1]), base64.b64decode(lines[2])


def verify_chain(log_lines, chain_text, root_txt, public):
    """docs/LEDGER.md "Verifying it by hand": the chain against the log lines (bytes, without
    their newlines) and ROOT.txt, trusting only `public`. Returns the number of checkpoints."""
    leaves = [leaf_hash(line) for line in log_lines]
    lines = chain_text.split("\n")
    lines.pop()  # after the last newline: empty, or an unfinished line that is not part of the chain
    header = json.loads(lines[0])
    if header["version"] != 2:
        fail(f"PROOFCHAIN.jsonl: version {header['version']} is not 2")
    origin = header["origin"]
    if header["verifier_key"] != verifier_key(origin, public):
        fail("PROOFCHAIN.jsonl: the verifier key is not the trusted key")
    previous = None
    for n, text in enumerate(lines[1:], start=1):
        c = json.loads(text)
        where = f"checkpoint {n}"
        size, root = open_note(c["signed_note"], origin, public, where)
        if size != c["size"] or root.hex() != c["root"]:
            fail(f"{where}: the note does not match its size and root")
        start = previous[0] if previous else 0
        if size <= start:
            fail(f"{where}: size {size} does not grow from {start}")
        if size > len(leaves):
            fail(f"sovereign-scans.jsonl has {len(leaves)} lines but {where} signed {size}")
        stored = base64.b64decode(c["leaves"])
        if len(stored) != 32 * (size - start):
            fail(f"{where}: {len(stored)} leaf bytes for {size - start} lines")
        for i in range(start, size):
            if stored[32 * (i - start) : 32 * (i - start + 1)] != leaves[i]:
                fail(f"line {i + 1} of sovereign-scans.jsonl is not the line {where} signed")
        if tree_hash(leaves[:size]) != root:
            fail(f"{where}: the root is not the tree of its lines")
        proof = [bytes.fromhex(h) for h in c["consistency"]]
        if previous is None and proof:
            fail(f"{where}: the first checkpoint has a consistency proof")
        if previous and not verify_consistency(previous[0], size, previous[1], root, proof):
            fail(f"{where}: the consistency proof from size {previous[0]} does not verify")
        previous = (size, root)
        last_note = c["signed_note"]
    if previous is None or root_txt != last_note:
        fail("ROOT.txt is not the newest checkpoint")
    return len(lines) - 1


def ledger(doc):
    private = key(doc.value("key seed"))
    public = base64.b64decode(public_b64(private))
    same("ledger public key", doc.value("public key (base64)"), public_b64(private))
    origin = doc.value("origin")
    same("ledger key id", doc.value("key id"), key_id(origin, public).hex())
    same("ledger verifier key", doc.value("verifier key"), verifier_key(origin, public))
    log = [line.encode() for line in doc.block("scan-log").split("\n")]
    leaves = [leaf_hash(line) for line in log]
    for i, leaf in enumerate(leaves):
        same(f"leaf {i}", doc.value(f"leaf {i}"), leaf.hex())
    same("root of 2", doc.value("root of 2"), tree_hash(leaves[:2]).hex())
    same("root of 3", doc.value("root of 3"), tree_hash(leaves).hex())
    proof = consistency(2, leaves)
    same("consistency 2 → 3", doc.value("consistency 2 → 3"), ", ".join(h.hex() for h in proof))
    same(
        "inclusion of leaf 0 in 3",
        doc.value("inclusion of leaf 0 in 3"),
        ", ".join(h.hex() for h in inclusion(0, leaves)),
    )
    # Ed25519 signatures are deterministic: the notes are recomputed exactly.
    note = signed_note(private, origin, 3, tree_hash(leaves))
    same("ROOT.txt", doc.block("root-txt") + "\n", note)

    # PROOFCHAIN.jsonl, byte for byte from the documented fields, then verified.
    chain = doc.block("proofchain") + "\n"
    header = json.loads(chain.split("\n")[0])
    compact = lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False)  # noqa: E731
    lines = [
        compact(
            {
                "version": 2,
                "origin": origin,
                "log": "sovereign-scans.jsonl",
                "leaf": header["leaf"],
                "verifier_key": verifier_key(origin, public),
            }
        )
    ]
    for start, size, at in [(0, 2, "2026-11-29T10:05:01Z"), (2, 3, "2026-11-29T10:10:01Z")]:
        lines.append(
            compact(
                {
                    "size": size,
                    "root": tree_hash(leaves[:size]).hex(),
                    "signed_note": signed_note(private, origin, size, tree_hash(leaves[:size])),
                    "consistency": [h.hex() for h in consistency(start, leaves[:size])],
                    "leaves": base64.b64encode(b"".join(leaves[start:size])).decode(),
                    "created_at": at,
                }
            )
        )
    same("PROOFCHAIN.jsonl", chain, "\n".join(lines) + "\n")
    same("PROOFCHAIN.jsonl checkpoints verified", 2, verify_chain(log, chain, note, public))


def verify_ledger(log_dir, public_key):
    """--verify-ledger: a real log directory, checked from the documented rules alone."""
    with open(f"{log_dir}/sovereign-scans.jsonl", "rb") as f:
        log = f.read().split(b"\n")[:-1]  # complete lines only
    with open(f"{log_dir}/PROOFCHAIN.jsonl", encoding="utf-8") as f:
        chain = f.read()
    with open(f"{log_dir}/ROOT.txt", encoding="utf-8") as f:
        root_txt = f.read()
    checkpoints = verify_chain(log, chain, root_txt, base64.b64decode(public_key))
    print(f"ok: {len(log)} lines, {checkpoints} checkpoints")


def main():
    if sys.argv[1] == "--verify-ledger":
        verify_ledger(sys.argv[2], sys.argv[3])
        return
    docs = sys.argv[1]
    protocol(Doc(f"{docs}/PROTOCOL.md"))
    event_envelope(Doc(f"{docs}/EVENT_ENVELOPE.md"))
    history(Doc(f"{docs}/API.md"))
    ledger(Doc(f"{docs}/LEDGER.md"))


if __name__ == "__main__":
    main()
