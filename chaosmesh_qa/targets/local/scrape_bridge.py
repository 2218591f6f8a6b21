"""Push each new Envoy's scrapes into Prometheus until Prometheus's own scrape loop has it.

Debian's Prometheus 2.42 hands targets to its scrapers on a 5 s tick that starts with the process (its
discovery manager's update throttle; no flag changes it), so an Envoy is first scraped 5-6 s after
Prometheus starts, or up to 5 s after a SIGHUP that added it.  The supervisor does not wait for that:
``ScrapeBridge`` scrapes every target Prometheus's scrape pools do not list yet, exactly as the
configured jobs would (``prometheus.JOBS``: same path, parameters, dropped series, target labels, ``up``),
and writes the samples through Prometheus's remote-write receiver (``--web.enable-remote-write-receiver``,
``/api/v1/write``).  Prometheus stays the one store every probe queries; the bridge only fills the first
seconds of each target (docs/explanation/envoy-notes.md §7).

The handover never writes a sample older than one of Prometheus's own: a target's scrape loop is listed in
``/api/v1/targets`` before its first scrape, and the bridge asks for that list *after* scraping the Envoy
and before pushing, so a bridged sample's timestamp is earlier than any scrape Prometheus has made of that
target only if that scrape started after the bridge's (then the bridge's sample is simply the older one).
A push Prometheus rejects (out of order) loses only the bridge's own sample.  Once listed, a target is never
bridged again.  The supervisor runs ``run`` as a background task; the wire format (protobuf, snappy) is
encoded here by hand: a few fields, and snappy's literal-only form.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from chaosmesh_qa.targets.local.prometheus import JOBS, METRICS_PATH, ScrapeJob, ScrapeTarget

log = logging.getLogger("chaosmesh_qa.supervisor")

STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]  # Prometheus's staleness marker
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')
_UNESCAPE = re.compile(r"\\(.)")

Labels = tuple[tuple[str, str], ...]


def parse_exposition(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(metric name, labels, value) for each sample of a Prometheus text exposition (comments skipped)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, body, raw = match.groups()
        labels = {key: _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)
                  for key, value in _LABEL.findall(body or "")}
        samples.append((name, labels, float(raw)))
    return samples


def series(job: ScrapeJob, target: ScrapeTarget, text: str) -> dict[Labels, float]:
    """The series Prometheus's scrape of ``target`` by ``job`` would write from ``text``: the job's drops applied,
    the target's labels attached (a scraped label of the same name kept as ``exported_<name>``)."""
    attached = {"job": job.name, "instance": f"127.0.0.1:{target.port}", **target.labels}
    found: dict[Labels, float] = {}
    for name, labels, value in parse_exposition(text):
        if any(name == metric and labels.get(label) == dropped for metric, label, dropped in job.drop):
            continue
        merged = {(f"exported_{key}" if key in attached else key): v for key, v in labels.items()}
        merged.update(attached)
        merged["__name__"] = name
        found[tuple(sorted(merged.items()))] = value
    return found


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # a length-delimited protobuf field
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@functools.lru_cache(maxsize=1 << 16)
def _label(name: str, value: str) -> bytes:  # a Label field; the same few pairs recur in every series
    return _field(1, _field(1, name.encode()) + _field(2, value.encode()))


def write_request(samples: dict[Labels, float], timestamp_ms: int) -> bytes:
    """A remote-write ``WriteRequest`` (prompb): one ``TimeSeries`` of one sample per series."""
    body = bytearray()
    for labels, value in samples.items():
        encoded = b"".join([_label(k, v) for k, v in labels])
        sample = b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(timestamp_ms)
        body += _field(1, encoded + _field(2, sample))
    return bytes(body)


def snappy_literal(data: bytes) -> bytes:
    """``data`` in snappy's block format as literals only: valid for any decoder, no compression (loopback)."""
    out = bytearray(_varint(len(data)))
    for start in range(0, len(data), 65536):
        chunk = data[start:start + 65536]
        n = len(chunk) - 1  # a literal's tag: its length - 1 in the tag byte (< 60) or in 1 or 2 bytes after it
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + n.to_bytes(2, "little")
        out += chunk
    return bytes(out)


@dataclass
class ScrapeBridge:
    """Bridge every target of ``targets()`` until Prometheus at ``prometheus_url`` lists it (module docstring)."""

    session: Callable[[], aiohttp.ClientSession]
    prometheus_url: str
    targets: Callable[[], list[ScrapeTarget]]
    interval_s: float
    handed_over: set[tuple[str, str]] = field(default_factory=set)  # (job, instance) Prometheus scrapes itself
    _pushed: dict[tuple[str, str], set[Labels]] = field(default_factory=dict)  # last series pushed, for staleness
    _poked: asyncio.Event = field(default_factory=asyncio.Event)

    def poke(self) -> None:
        """Scrape now, not at the next interval: pods have just become ready (their first samples are wanted)."""
        self._poked.set()

    async def run(self) -> None:
        said = ""
        while True:
            started = time.monotonic()
            self._poked.clear()
            try:
                await self.cycle()
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
                if str(exc) != said:  # once per distinct failure (Prometheus gone: every interval)
                    log.warning("scrape bridge: %s", exc)
                said = str(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), max(0.0, self.interval_s - (time.monotonic() - started)))

    async def cycle(self) -> None:
        """One scrape of every target not handed over, then one push per target and job."""
        current = {(job.name, f"127.0.0.1:{target.port}"): (job, target) for target in self.targets() for job in JOBS}
        pending = [(key, job, target) for key, (job, target) in current.items() if key not in self.handed_over]
        # a target gone before Prometheus scraped it (its pod replaced): staleness markers, as Prometheus writes
        removed = [key for key in self._pushed if key not in current]
        if not pending and not removed:
            return
        timestamp_ms = int(time.time() * 1000)
        scraped = await asyncio.gather(*(self._scrape(job, target) for _, job, target in pending))
        await self._note_handed_over()  # after scraping: see the module docstring
        pushes = [self._push(dict.fromkeys(self._pushed.pop(key), STALE_NAN), timestamp_ms) for key in removed]
        for (key, job, target), found in zip(pending, scraped, strict=True):
            if key in self.handed_over:
                self._pushed.pop(key, None)
                continue
            up = tuple(sorted({"job": job.name, "instance": key[1], **target.labels, "__name__": "up"}.items()))
            samples = dict(found or {})
            # a failed scrape or a series gone: up 0 and staleness markers, as Prometheus writes them
            samples.update(dict.fromkeys(self._pushed.get(key, set()) - samples.keys() - {up}, STALE_NAN))
            samples[up] = 0.0 if found is None else 1.0
            self._pushed[key] = {*(found or {}), up}
            pushes.append(self._push(samples, timestamp_ms))
        await asyncio.gather(*pushes)

    async def _scrape(self, job: ScrapeJob, target: ScrapeTarget) -> dict[Labels, float] | None:
        url = f"http://127.0.0.1:{target.port}{METRICS_PATH}"
        try:
            async with self.session().get(url, params=job.params, timeout=aiohttp.ClientTimeout(total=1)) as reply:
                if reply.status != 200:
                    return None
                text = await reply.text()
            # parsing and encoding off the event loop: it answers `up`'s status polls meanwhile (~7,000 series)
            return await asyncio.to_thread(series, job, target, text)
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None

    async def _note_handed_over(self) -> None:
        url = f"{self.prometheus_url}/api/v1/targets"
        async with self.session().get(url, params={"state": "active"}) as reply:
            active = (await reply.json())["data"]["activeTargets"]
        self.handed_over.update((t["labels"]["job"], t["labels"]["instance"]) for t in active)

    async def _push(self, samples: dict[Labels, float], timestamp_ms: int) -> None:
        headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                   "X-Prometheus-Remote-Write-Version": "0.1.0"}
        body = await asyncio.to_thread(lambda: snappy_literal(write_request(samples, timestamp_ms)))
        async with self.session().post(f"{self.prometheus_url}/api/v1/write", data=body, headers=headers) as reply:
            if reply.status >= 300:  # out of order: Prometheus's own scrape came first; its sample stands
                log.info("scrape bridge: push refused (%s): %s", reply.status, (await reply.text()).strip())
