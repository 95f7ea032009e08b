"""A named fake of an OpenAI-compatible LLM server, for the ways real servers misbehave.

Modes (POST /v1/chat/completions):
    echo         a well-formed completion: a numbered list of captions made from the request's
                 seed; every request is recorded (seed, messages, max_tokens, time in flight)
    junk         HTTP 200 with a body that is not JSON
    not-chat     HTTP 200 with JSON that is not a chat completion
    empty        a well-formed completion whose content is empty
    error        HTTP 400 with an OpenAI-style error body
    unavailable  HTTP 503
    slow         answers after `--delay` seconds

In a test: `FakeLLMServer(mode).start()` (a thread), or as a process:
    python -m tests.support.fake_llm_server --mode junk --port 8099
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeLLMServer:
    def __init__(self, mode: str = "echo", port: int = 0, delay: float = 0.3) -> None:
        self.mode = mode
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                owner._answer(self, request)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeLLMServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler, request: dict[str, Any]) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            started = time.monotonic()
            if self.mode in ("echo", "slow"):
                time.sleep(self.delay)  # long enough for parallel requests to overlap
            with self._lock:
                self.requests.append({**request, "seconds": time.monotonic() - started})
            if self.mode == "junk":
                return _send(handler, 200, b"<html>this is not JSON</html>", "text/html")
            if self.mode == "not-chat":
                return _send(handler, 200, json.dumps({"hello": "world"}).encode())
            if self.mode == "error":
                body = {"error": {"message": "model 'nope' not found", "type": "invalid_request_error", "code": 400}}
                return _send(handler, 400, json.dumps(body).encode())
            if self.mode == "unavailable":
                return _send(handler, 503, json.dumps({"error": {"message": "loading model"}}).encode())
            seed = request.get("seed", 0)
            content = "" if self.mode == "empty" else "\n".join(
                f"{i}. a photo number {seed} {word}" for i, word in enumerate(["cat", "rug", "lamp"], 1))
            body = {"id": f"fake-{seed}", "object": "chat.completion", "created": int(time.time()),
                    "model": request.get("model", "fake"), "system_fingerprint": "fake-fp-1",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}
            return _send(handler, 200, json.dumps(body).encode())
        finally:
            with self._lock:
                self.in_flight -= 1


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str = "application/json") -> None:
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    except OSError:  # the client gave up (its timeout): nothing to answer
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="echo")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.3)
    args = parser.parse_args()
    server = FakeLLMServer(args.mode, args.port, args.delay)
    print(f"fake LLM server ({args.mode}) on {server.url}", flush=True)
    server.httpd.serve_forever()
