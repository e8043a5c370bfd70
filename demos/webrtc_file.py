"""Send a file to a streamrt server over WebRTC (aiortc) and print the captions from the data channel.

    python demos/webrtc_file.py speech.wav --url ws://127.0.0.1:8765 [--policy wait-k]
"""

from __future__ import annotations

import argparse
import asyncio

from rich.console import Console

from streamrt.clients.captions import CaptionView, summary_table
from streamrt.clients.webrtc_client import stream_file_webrtc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--url", default="ws://127.0.0.1:8765")
    parser.add_argument("--policy", default=None)
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    console = Console()
    options = {"policy": args.policy} if args.policy else {}
    with CaptionView(console) as view:
        result = asyncio.run(stream_file_webrtc(args.url, args.file, options=options, on_message=view, token=args.token))
    if result.end is None:
        console.print(f"[red]no end[/] (close {result.close_code}: {result.close_reason})")
        return 1
    console.print(summary_table(result.end))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
