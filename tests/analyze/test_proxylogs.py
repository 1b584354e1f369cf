from pathlib import Path

from harness.analyze.proxylogs import scan_proxy_logs


def test_leak_path_signals_are_counted_per_replica(tmp_path: Path) -> None:
    (tmp_path / "proxy-0.log").write_text(
        "\x1b[92m14:27:10 - LiteLLM:WARNING\x1b[0m: logging_worker.py:234 - LoggingWorker: 1 callback(s) timed out "
        "after 20.0s (callback: Logging.async_success_handler)\n"
        "14:27:11 - LiteLLM:ERROR: redis_cache.py:1212 - LiteLLM Redis Caching: async set() - Got exception from "
        "REDIS: Error 111\nINFO: 127.0.0.1 - POST /v1/chat/completions 200\n")
    (tmp_path / "proxy-1.log").write_text(
        "14:27:54 - LiteLLM:WARNING: redis_cache.py:320 - Redis circuit breaker OPENED after 5 consecutive failures\n"
        "14:28:00 - LoggingWorker: 3 callback(s) timed out after 20.0s\n")
    (tmp_path / "proxy-config.yaml").write_text("timed out after 20.0s callback(s)\n")  # not a log
    found = scan_proxy_logs(tmp_path)
    timeout = found["logging_callback_timeout"]
    assert timeout["count"] == 2
    assert timeout["replicas"] == {"proxy-0": 1, "proxy-1": 1}
    assert "\x1b" not in timeout["example"] and timeout["example"].startswith("14:27:10")
    assert found["redis_error"]["count"] == 1
    assert found["circuit_breaker"]["replicas"] == {"proxy-1": 1}
    assert "cancelled" not in found


def test_no_logs_no_signals(tmp_path: Path) -> None:
    assert scan_proxy_logs(tmp_path) == {}
