"""The compose override for several dispatchers: every dispatcher reaches the shared store, and
the store never evicts on its own (the service bounds the cache and keeps its index)."""

from __future__ import annotations

import yaml

from harness import REPO


def test_every_dispatcher_shares_the_redis_service() -> None:
    base = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    override = yaml.safe_load((REPO / "docker-compose.cache.yml").read_text())
    services = override["services"]
    dispatchers = [name for name in services if name.startswith("dispatcher")]
    assert len(dispatchers) >= 2 and "dispatcher" in base["services"]
    for name in dispatchers:
        environment = services[name]["environment"]
        assert environment["PROOFRACE_CACHE"] == "redis"
        assert environment["PROOFRACE_CACHE_URL"].startswith("redis://redis:6379/")
        assert "redis" in services[name]["depends_on"]
    published = [p.rsplit(":", 2)[1] for p in services["dispatcher-b"]["ports"]]
    assert not set(published) & {"${PROOFRACE_RPC_PORT:-7340}", "${PROOFRACE_METRICS_PORT:-7341}"}


def test_the_store_never_evicts_on_its_own() -> None:
    dockerfile = (REPO / "docker" / "redis" / "Dockerfile").read_text()
    assert '"--maxmemory-policy", "noeviction"' in dockerfile
    assert "apt-get install" in dockerfile and "redis-server" in dockerfile
