"""A local stand-in for a Slack incoming webhook, for the demo (scripts/demo.sh).

Listens on 127.0.0.1 (port 0 picks a free one) and prints its address first:

    listening on http://127.0.0.1:PORT

Then, for every message POSTed to /services/..., it prints the message's `text`
and a one-line summary of its Block Kit `blocks`, and answers `200 ok` as Slack
does. A body that is not a JSON object gets `400 invalid_payload`, another path
`404 no_service`. Standard library only; stop it with SIGTERM.

    python3 scripts/demo_receiver.py [--port PORT]
"""

import argparse
import html
import json
import re
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

# How much of one block's text the summary keeps.
BLOCK_TEXT_LIMIT = 80


def readable(text):
    """A mrkdwn text as a person reads it, on one line: entities unescaped, `*bold*`
    marks dropped, links `<url|label>` shown by their label, a `*Label*` line
    followed by its value as `Label: value`."""
    text = re.sub(r"<[^|>]+\|([^>]+)>", r"\1", text)
    lines = [line.strip() for line in text.replace("*", "").splitlines() if line.strip()]
    return html.unescape(": ".join(lines))


def shortened(text, limit=BLOCK_TEXT_LIMIT):
    """[readable] text, at most `limit` characters."""
    text = readable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def block_summary(block):
    """One block in a few words: its type and what it shows."""
    kind = block.get("type", "?")
    if "fields" in block:
        labels = [readable(field.get("text", "")).split(":")[0] for field in block["fields"]]
        return f"{kind} with {len(labels)} fields ({', '.join(labels)})"
    text = block.get("text")
    if isinstance(text, dict):
        return f'{kind} "{shortened(text.get("text", ""))}"'
    elements = block.get("elements")
    if isinstance(elements, list) and elements:
        return f'{kind} "{shortened(elements[0].get("text", ""))}"'
    return kind


class Webhook(BaseHTTPRequestHandler):
    received = 0

    def answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if not self.path.startswith("/services/"):
            self.answer(404, "no_service")
            return
        try:
            message = json.loads(body)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self.answer(400, "invalid_payload")
            return
        Webhook.received += 1
        blocks = message.get("blocks") or []
        print(f"message {Webhook.received}")
        print(f"  text:   {html.unescape(message.get('text', ''))}")
        print(f"  blocks: {len(blocks)}: " + " | ".join(block_summary(b) for b in blocks))
        sys.stdout.flush()
        self.answer(200, "ok")

    def log_message(self, format, *args):
        """No access log: the messages are the output."""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    port = parser.parse_args().port
    server = HTTPServer(("127.0.0.1", port), Webhook)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
