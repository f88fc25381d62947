"""A local stand-in for the Gemini REST API that replays recorded responses, so the
real `google-genai` client is exercised end to end without network."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Replay:
    def __init__(self, answers: list[dict], fail_first: int = 0):
        self.answers = list(answers)  # TurnAnalysis-shaped dicts, served in order
        self.fail_first = fail_first
        self.requests: list[dict] = []
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                replay.requests.append({"path": self.path, "body": body, "key": self.headers.get("x-goog-api-key")})
                if len(replay.requests) <= replay.fail_first:
                    self._send(503, {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
                    return
                answer = replay.answers.pop(0) if replay.answers else {"verdicts": []}
                self._send(200, {
                    "candidates": [{"content": {"role": "model", "parts": [{"text": json.dumps(answer)}]},
                                    "finishReason": "STOP", "index": 0}],
                    "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 20, "totalTokenCount": 120},
                    "modelVersion": "gemini-2.0-flash",
                })  # fmt: skip

            def _send(self, code, payload):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
