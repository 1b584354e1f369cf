"""mock_* kinds: the mock LLM's run-time faults, through its control API (no stack capability needed).

Each kind maps its params to a patch of the mock's fault keys (harness/mockllm/config.py: rate_limit,
error_500, error_503, hang, reset, stream_cut, malformed_json, malformed_sse — at most one per request — and
latency, slow_first_token). The end restores the previous settings of the same keys, so overlapping mock
windows of different kinds do not undo each other.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field

from harness.nemesis.registry import FaultKindSpec, FaultParams, FaultRun, register

Probability = Annotated[float, Field(ge=0, le=1, description="share of requests hit (0..1)")]
Patch = dict[str, dict[str, float]]


class MockFault(FaultParams):
    """Base of the mock kinds: `patch()` is the kind; start sets it, end restores what was there."""

    probability: Probability = 1.0

    def patch(self) -> Patch:
        """{mock fault key: {"p": probability, param: value}}."""
        raise NotImplementedError

    def start(self, run: FaultRun) -> str:
        patch = self.patch()
        with run.mock_lock:
            ctl = run.mock()
            current = ctl.get_faults().get("faults", {})
            run.state["restore"] = {key: dict(current[key]) for key in patch if key in current}
            ctl.set_faults(dict(patch))
        return f"mock faults set: {json.dumps(patch, sort_keys=True)}"

    def end(self, run: FaultRun) -> str:
        restore = run.state.get("restore")
        if restore is None:
            return "nothing to restore (the start failed)"
        with run.mock_lock:
            run.mock().set_faults(restore)
        return f"mock faults restored: {json.dumps(restore, sort_keys=True)}"


_ERROR_KEYS = {429: "rate_limit", 500: "error_500", 503: "error_503"}


class MockError(MockFault):
    """The mock answers with an HTTP error instead of a completion."""

    status: Literal[429, 500, 503] = Field(500, description="the HTTP status answered")
    retry_after_s: float | None = Field(None, ge=0, description="Retry-After of a 429 (seconds); null: the "
                                                               "mock's default")

    def patch(self) -> Patch:
        spec = {"p": self.probability}
        if self.status == 429 and self.retry_after_s is not None:
            spec["retry_after_s"] = self.retry_after_s
        return {_ERROR_KEYS[self.status]: spec}


class MockLatency(MockFault):
    """The mock waits before it answers (before the response headers)."""

    latency_s: float = Field(1.0, ge=0, description="seconds added before the answer")
    jitter_s: float = Field(0.0, ge=0, description="plus a uniform 0..jitter_s more")

    def patch(self) -> Patch:
        return {"latency": {"p": self.probability, "fixed_s": self.latency_s, "jitter_s": self.jitter_s}}


class MockHang(MockFault):
    """The mock accepts the request and never answers."""

    def patch(self) -> Patch:
        return {"hang": {"p": self.probability}}


class MockReset(MockFault):
    """The mock resets the connection before the response."""

    def patch(self) -> Patch:
        return {"reset": {"p": self.probability}}


class MockStreamCut(MockFault):
    """The mock closes the connection in the middle of the answer (a non-stream body is cut in half)."""

    after_chunks: int = Field(1, ge=0, description="content chunks sent before the cut")

    def patch(self) -> Patch:
        return {"stream_cut": {"p": self.probability, "after_chunks": float(self.after_chunks)}}


class MockMalformed(MockFault):
    """The mock sends a broken body: truncated JSON, or an SSE frame without its `data:` prefix."""

    kind: Literal["json", "sse"] = Field("json", description="json: a truncated JSON body / data frame; sse: a "
                                                             "frame without the `data:` prefix")
    after_chunks: int | None = Field(None, ge=0, description="content chunks sent before the broken frame; "
                                                             "null: the mock's default (1)")

    def patch(self) -> Patch:
        spec = {"p": self.probability}
        if self.after_chunks is not None:
            spec["after_chunks"] = float(self.after_chunks)
        return {f"malformed_{self.kind}": spec}


class MockSlowFirstToken(MockFault):
    """The mock waits before the first chunk of a stream (a slow model)."""

    delay_s: float = Field(2.0, ge=0, description="seconds before the first chunk")

    def patch(self) -> Patch:
        return {"slow_first_token": {"p": self.probability, "delay_s": self.delay_s}}


register(FaultKindSpec("mock_error", MockError, needs=None, on="mock"))
register(FaultKindSpec("mock_latency", MockLatency, needs=None, on="mock"))
register(FaultKindSpec("mock_hang", MockHang, needs=None, on="mock"))
register(FaultKindSpec("mock_reset", MockReset, needs=None, on="mock"))
register(FaultKindSpec("mock_stream_cut", MockStreamCut, needs=None, on="mock"))
register(FaultKindSpec("mock_malformed", MockMalformed, needs=None, on="mock"))
register(FaultKindSpec("mock_slow_first_token", MockSlowFirstToken, needs=None, on="mock"))
