"""Recomputes every worked example of docs/PROTOCOL.md and docs/EVENT_ENVELOPE.md from its
inputs with Python's standard library and `cryptography` (Ed25519) - a second implementation of
the documented rules, independent of the Rust code. Run by testkit/tests/doc_examples.rs.

Usage: doc_examples.py DOCS_DIR. Prints one line per checked value; exits 1 naming the first
value that differs from what the rules give.

The values are read from the markdown: fenced blocks whose info string is
`<language> example=<name>`, and bullet lines `- <label>: `<value>``.
"""

import base64
import hashlib
import json
import re
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
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

    # An enrollment: signed with the key it enrolls, which it names.
    body = doc.block("enroll-body").encode()
    enroll = json.loads(body)
    same("enrollment public_key", enroll["public_key"], node_public)
    message = request_message("POST", "/api/agent/enroll", enroll["node_id"], 1764410400, body)
    same("enroll message", doc.block("enroll-message"), message)
    same("enroll signature", doc.value("enroll signature"), sign(node, message.encode()))

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


def main():
    docs = sys.argv[1]
    protocol(Doc(f"{docs}/PROTOCOL.md"))
    event_envelope(Doc(f"{docs}/EVENT_ENVELOPE.md"))
    history(Doc(f"{docs}/API.md"))


if __name__ == "__main__":
    main()
