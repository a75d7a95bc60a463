"""Post a message to a chat channel through the incoming webhook in $ACME_CHAT_WEBHOOK.

Without the webhook (on a laptop, in CI, in `make demo`) nothing leaves the machine: the message
is appended to out/notifications.jsonl and printed, so a run still shows what it would have sent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from pathlib import Path

DRY_RUN_LOG = Path("out/notifications.jsonl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel", required=True, help="e.g. #support-urgent")
    parser.add_argument("--message", required=True)
    parser.add_argument("--file", type=Path, help="a file whose text follows the message")
    args = parser.parse_args()

    text = args.message
    if args.file is not None:
        text += "\n\n" + args.file.read_text(encoding="utf-8")
    payload = {"channel": args.channel, "text": text}
    webhook = os.environ.get("ACME_CHAT_WEBHOOK")
    if not webhook:
        DRY_RUN_LOG.parent.mkdir(parents=True, exist_ok=True)
        with DRY_RUN_LOG.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(payload, ensure_ascii=False) + "\n")
        print(f"ACME_CHAT_WEBHOOK is not set: not posted; logged to {DRY_RUN_LOG}")
        print(f"{args.channel}: {args.message}")
        return 0
    request = urllib.request.Request(webhook, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as response:
        print(f"posted to {args.channel} (HTTP {response.status})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
