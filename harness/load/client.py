"""One Locust user's HTTP client: plans requests from the mix and sends them (geventhttpclient, gevent).

Two APIs (`LoadConfig.endpoint`): `chat` (OpenAI chat completions, `data:` frames ending with `[DONE]`) and
`messages` (Anthropic Messages at the proxy's /v1/messages, like Claude Code: the key in `x-api-key`, the end user in
`metadata.user_id` and the header, named SSE events ending with `message_stop`). Rows, walk-aways, timeouts and
retries are the same for both.

geventhttpclient (what Locust's FastHttpUser uses) is driven directly, one keep-alive connection per user
and replica, so that a stream can be read frame by frame and abandoned by closing the socket: the proxy sees
the client go away (FIN, or RST when unread data is still queued), exactly like a user closing a tab.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import gevent
import orjson
from geventhttpclient import HTTPClient
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError, HTTPSocketPoolResponse

from harness.load import keys as keys_mod
from harness.load.config import LoadConfig

IDLE_RECONNECT_S = 2.0       # drop a keep-alive connection idle longer than this (servers close them at ~5 s)
MAX_ERROR_BODY = 64 * 1024
MAX_ERROR_TEXT = 2000
ANTHROPIC_VERSION = "2023-06-01"
_FILLER = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
           "et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ") * 40


class ClientTimeout(BaseException):
    """The client gave up after client_timeout_s (BaseException: no library swallows it)."""


class WalkAway(BaseException):
    """The planned walk-away before the first chunk (disconnect_before_first_chunk_s)."""


@dataclass(slots=True)
class RequestPlan:
    """One logical request (all its attempts share it, and the request id)."""

    request_id: str
    end_user: str
    replica: int
    stream: bool
    disconnect_after: int | None     # walk away after this many content chunks (None: never)
    walk_away_s: float | None        # walk away if no content chunk came within this time
    max_tokens: int | None
    prompt: str
    key: int | None = None           # the virtual key's index (harness/load/keys.py); None: the master key


class RequestPlanner:
    """Draws plans from the mix with a per-user RNG; replicas round-robin per process (or random)."""

    _rr = 0   # per process, shared by the users of the process

    def __init__(self, cfg: LoadConfig, rng: random.Random) -> None:
        self.cfg = cfg
        self.rng = rng
        ids = list(cfg.end_users)
        self.hot: list[str] = []
        self.cold: list[str] = ids
        if cfg.pick == "hot_set":
            shuffled = ids[:]
            random.Random(cfg.seed).shuffle(shuffled)   # the same hot set in every process
            n_hot = max(1, round(cfg.hot_fraction * len(ids)))
            self.hot, self.cold = shuffled[:n_hot], shuffled[n_hot:] or shuffled[:n_hot]
        self.weights = cfg.max_tokens_weights
        self.planned = 0      # plans drawn so far (the first `cfg.first_requests` come from first_* settings)
        self._keys: dict[str, int] = {}

    def key(self, end_user: str) -> int | None:
        """The virtual key every request of `end_user` uses (None: the master key)."""
        if self.cfg.keys <= 0:
            return None
        index = self._keys.get(end_user)
        if index is None:
            index = self._keys[end_user] = keys_mod.key_index_for(end_user, self.cfg.seed, self.cfg.keys)
        return index

    def end_user(self) -> str:
        if self.hot and self.rng.random() < self.cfg.hot_share:
            return self.rng.choice(self.hot)
        return self.rng.choice(self.cold)

    def replica(self) -> int:
        n = len(self.cfg.proxy_urls)
        if self.cfg.replica_pick == "random":
            return self.rng.randrange(n)
        RequestPlanner._rr += 1
        return RequestPlanner._rr % n

    def next(self) -> RequestPlan:
        cfg, rng = self.cfg, self.rng
        request_id = uuid.uuid4().hex
        stream = rng.random() < cfg.stream_share
        cut = stream and rng.random() < cfg.disconnect_share
        disconnect_after = rng.randint(*cfg.disconnect_after_chunks) if cut else None
        walk_away_s = cfg.disconnect_before_first_chunk_s if cut else None
        choices = cfg.max_tokens_choices
        max_tokens = rng.choices(choices, weights=self.weights)[0] if len(choices) > 1 else choices[0]
        self.planned += 1
        if self.planned <= cfg.first_requests:     # planned apart from the mix (mix.first_requests)
            stream, max_tokens = cfg.first_stream, cfg.first_max_tokens
            disconnect_after = cfg.first_disconnect_after if stream else None
            walk_away_s = None
        n = rng.randint(*cfg.prompt_chars)
        head = f"[{request_id}] "
        start = rng.randrange(0, len(_FILLER) // 2)
        prompt = (head + _FILLER[start:start + max(0, n - len(head))])[:max(n, len(head))]
        end_user = self.end_user()
        return RequestPlan(request_id, end_user, self.replica(), stream, disconnect_after, walk_away_s,
                           max_tokens, prompt, self.key(end_user))


def error_message(body: bytes) -> str:
    """The proxy's error text: JSON `error.message` (or `detail`), else the body itself."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace").strip()[:MAX_ERROR_TEXT]
    msg: Any = data
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data))
        msg = err.get("message", err) if isinstance(err, dict) else err
    text = msg if isinstance(msg, str) else orjson.dumps(msg).decode()
    return text[:MAX_ERROR_TEXT]


def _abandon(resp: HTTPSocketPoolResponse | None) -> None:
    """Close the response's socket now (walk away); never return it to the pool."""
    if resp is None:
        return
    sock, pool = resp._sock, resp._pool
    resp._sock = resp._pool = None
    if sock is not None:
        if pool is not None:
            pool.release_socket(sock)
        else:
            sock.close()


class ChatClient:
    """Sends attempts of plans; one connection per replica, reopened after errors and long idle times."""

    def __init__(self, cfg: LoadConfig, master_key: str) -> None:
        self.cfg = cfg
        self._clients: dict[int, tuple[HTTPClient, float]] = {}
        self.messages = cfg.endpoint == "messages"
        # chat: `Authorization: Bearer <key>`; messages: `x-api-key: <key>` (Anthropic's SDK and Claude Code with an
        # API key; LiteLLM reads either)
        self._auth_header = "x-api-key" if self.messages else "Authorization"
        prefix = "" if self.messages else "Bearer "
        self._headers = {self._auth_header: f"{prefix}{master_key}", "Content-Type": "application/json",
                         "Accept": "application/json, text/event-stream"}
        if self.messages:
            self._headers["anthropic-version"] = ANTHROPIC_VERSION
        # the run's virtual keys (cfg.keys > 0), derived from the master key: never written anywhere
        self._key_auth = [f"{prefix}{keys_mod.virtual_key(master_key, cfg.key_salt, i)}" for i in range(cfg.keys)]
        self.path = cfg.path

    def _client(self, replica: int) -> HTTPClient:
        entry = self._clients.get(replica)
        now = time.monotonic()
        if entry is not None and now - entry[1] > IDLE_RECONNECT_S:
            entry[0].close()
            entry = None
        if entry is None:
            t = self.cfg.client_timeout_s
            client = HTTPClient.from_url(self.cfg.proxy_urls[replica], concurrency=1, connection_timeout=min(t, 10),
                                         network_timeout=t)
        else:
            client = entry[0]
        self._clients[replica] = (client, now)
        return client

    def _drop(self, replica: int) -> None:
        entry = self._clients.pop(replica, None)
        if entry is not None:
            entry[0].close()

    def close(self) -> None:
        for replica in list(self._clients):
            self._drop(replica)

    def body(self, plan: RequestPlan) -> bytes:
        body: dict[str, Any] = {"model": self.cfg.model, "messages": [{"role": "user", "content": plan.prompt}],
                                "stream": plan.stream}
        if self.messages:
            body["metadata"] = {"user_id": plan.end_user}
        else:
            body["user"] = plan.end_user
            if plan.stream:
                body["stream_options"] = {"include_usage": True}
        if plan.max_tokens is not None:
            body["max_tokens"] = plan.max_tokens
        return orjson.dumps(body)

    def attempt(self, plan: RequestPlan, attempt: int) -> tuple[dict[str, Any], BaseException | None]:
        """Send one attempt. Returns (requests.csv row, a GreenletExit to re-raise after recording, or None)."""
        headers = {**self._headers, "x-litellm-end-user-id": plan.end_user, "x-harness-request-id": plan.request_id}
        if plan.key is not None:
            headers[self._auth_header] = self._key_auth[plan.key]
        body = self.body(plan)
        status, chunks, disconnected, etype, etext, nbytes = 0, 0, False, "", "", 0
        killed: BaseException | None = None
        resp: HTTPSocketPoolResponse | None = None
        clean = False
        t_start = time.time()
        p0 = time.perf_counter()
        timer = gevent.Timeout(self.cfg.client_timeout_s, ClientTimeout)
        walk = gevent.Timeout(plan.walk_away_s, WalkAway) if plan.walk_away_s else None
        timer.start()
        if walk is not None:
            walk.start()
        try:
            resp = self._client(plan.replica).request("POST", self.path, body=body, headers=headers)
            status = resp.status_code
            if not 200 <= status < 300:
                data = resp.read(MAX_ERROR_BODY) if resp.content_length is None else resp.read()
                nbytes = len(data)
                etype, etext = "http_error", error_message(data)
                clean = resp.message_complete
            elif plan.stream:
                chunks, disconnected, etype, etext, nbytes = self._read_stream(resp, plan, walk)
                clean = resp.message_complete and not disconnected
            else:
                data = resp.read()
                nbytes = len(data)
                clean = resp.message_complete
                if not clean:
                    etype, etext = "truncated", "connection closed before the end of the body"
        except WalkAway:
            disconnected = True
        except ClientTimeout:
            etype, etext = "timeout", f"no complete answer after {self.cfg.client_timeout_s:g} s"
        except gevent.GreenletExit as exc:   # Locust stops the user: record it, then let it go
            killed = exc
            etype, etext = "stopped", "the load generator stopped the user mid-request"
            disconnected = plan.stream and status != 0
        except HTTPConnectionClosed as exc:
            etype, etext = "connection", f"connection closed: {exc}"
        except HTTPParseError as exc:
            etype, etext = "protocol", f"HTTP parse error: {exc}"
        except OSError as exc:
            etype, etext = "connection", f"{type(exc).__name__}: {exc}"
        finally:
            timer.close()
            if walk is not None:
                walk.close()
            if not clean:
                _abandon(resp)
                self._drop(plan.replica)
        t_end = time.time()
        row = {"t_start": t_start, "t_end": t_end, "end_user": plan.end_user, "replica": plan.replica,
               "stream": plan.stream,
               "disconnect_after": 0 if (plan.walk_away_s and disconnected and not chunks) else plan.disconnect_after,
               "disconnected": disconnected, "chunks": chunks, "status": status, "error_type": etype,
               "error_text": etext, "latency_s": time.perf_counter() - p0, "attempt": attempt,
               "request_id": plan.request_id, "key": plan.key, "_bytes": nbytes}
        return row, killed

    def _read_stream(self, resp: HTTPSocketPoolResponse, plan: RequestPlan,
                     walk: gevent.Timeout | None) -> tuple[int, bool, str, str, int]:
        """Reads `data:` lines: a content chunk is a chat frame with a non-empty `delta.content` or a Messages
        `content_block_delta` with text; the end is `[DONE]` (chat) or `message_stop` (Messages); an error is a
        frame with `error` (chat, LiteLLM) or of type `error` (Messages)."""
        chunks, nbytes, etype, etext, done = 0, 0, "", "", False
        if plan.disconnect_after == 0:      # walk away as soon as the response headers are in
            return 0, True, "", "", 0
        while True:
            line = resp.readline(b"\n")
            if not line:
                break
            nbytes += len(line)
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                continue          # read to the end of the body so the connection can be reused
            try:
                frame = orjson.loads(payload)
            except orjson.JSONDecodeError:
                etype, etext = "protocol", f"malformed SSE frame: {payload[:200].decode(errors='replace')}"
                continue
            if not isinstance(frame, dict):
                continue
            if "error" in frame:
                etype, etext = "stream_error", error_message(payload)
                continue
            if _is_content(frame):
                chunks += 1
                if walk is not None and chunks == 1:
                    walk.close()
                if plan.disconnect_after is not None and chunks >= plan.disconnect_after:
                    return chunks, True, etype, etext, nbytes
            elif frame.get("type") == "message_stop":
                done = True
        if not done and not etype:
            end = "message_stop" if self.messages else "[DONE]"
            etype, etext = "truncated", f"stream ended without {end} after {chunks} chunk(s)"
        return chunks, False, etype, etext, nbytes


def _is_content(frame: dict[str, Any]) -> bool:
    """A frame with content: chat `choices[0].delta.content`, or a Messages `content_block_delta` with text."""
    choices = frame.get("choices")
    if choices:
        return isinstance(choices[0], dict) and bool((choices[0].get("delta") or {}).get("content"))
    if frame.get("type") == "content_block_delta":
        delta = frame.get("delta")
        return isinstance(delta, dict) and bool(delta.get("text") or delta.get("partial_json")
                                                 or delta.get("thinking"))
    return False
