"""engine_core.tz against zoneinfo reading the same tzdata bytes.

The reference is ``tz.zoneinfo_from_tzdata(z)`` (``ZoneInfo.from_file`` over the tzdata
package's TZif bytes), not ``ZoneInfo(z)``: the latter prefers the host's /usr/share/zoneinfo,
which may be a different tzdata release.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import time
import zoneinfo
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import tzdata

import engine_core  # noqa: F401  (sets NUMBA_CACHE_DIR before numba loads)
from engine_core import tz
from engine_core.errors import EngineError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NAIVE_EPOCH = datetime(1970, 1, 1)
US = 1_000_000
YLO, YHI = 2020, 2035
ZONES = sorted(tz.available_tzids())
T_LO = int(datetime(YLO, 1, 1, tzinfo=UTC).timestamp())  # seconds
T_HI = int(datetime(YHI + 1, 1, 1, tzinfo=UTC).timestamp())


def ref_offset_s(zi: zoneinfo.ZoneInfo, ts_us: int) -> int:
    """UTC offset (s) zoneinfo gives at UTC µs ``ts_us``, exact integer arithmetic."""
    off = (EPOCH + timedelta(microseconds=ts_us)).astimezone(zi).utcoffset()
    return off // timedelta(seconds=1)


@pytest.fixture(scope="module")
def tables() -> tz.TzTables:
    return tz.build_tz_tables(ZONES, YLO, YHI)


@pytest.fixture(scope="module")
def refs() -> dict[str, zoneinfo.ZoneInfo]:
    return {z: tz.zoneinfo_from_tzdata(z) for z in ZONES}


def zone_slice(t: tz.TzTables, i: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = int(t.zone_start[i]), int(t.zone_start[i + 1])
    return t.trans_us[a:b], t.offset_s[a:b]


# ------------------------------------------------------------------------------------------
# zone universe, structure
# ------------------------------------------------------------------------------------------


def test_zone_universe_is_tzdata():
    avail = zoneinfo.available_timezones()
    assert len(ZONES) > 550
    assert set(ZONES) <= avail
    # Whatever else zoneinfo lists comes from the host's TZPATH (e.g. "localtime"), not tzdata.
    for extra in sorted(avail - set(ZONES)):
        with pytest.raises(EngineError) as ei:
            tz.build_tz_tables([extra], YLO, YHI)
        assert ei.value.code == "TZ_UNKNOWN"


def test_table_structure(tables):
    t = tables
    n = len(ZONES)
    assert t.tzids == tuple(ZONES) and t.n_zones == n
    assert t.zone_start.dtype == np.int64 and t.zone_start.shape == (n + 1,)
    assert t.trans_us.dtype == np.int64 and t.offset_s.dtype == np.int32
    assert t.zone_start[0] == 0 and t.zone_start[-1] == t.trans_us.size == t.offset_s.size
    assert np.all(np.diff(t.zone_start) >= 1)
    assert np.all(t.trans_us[t.zone_start[:-1]] == np.iinfo(np.int64).min)
    for arr in (t.zone_start, t.trans_us, t.offset_s):
        assert not arr.flags.writeable
    lo, hi = tz.exact_range_us(YLO, YHI)
    for i in range(n):
        ts, off = zone_slice(t, i)
        assert np.all(np.diff(ts[1:]) > 0)
        assert np.all(off[1:] != off[:-1])
        assert np.all((ts[1:] > lo) & (ts[1:] < hi))
        assert np.all(np.abs(off) <= 16 * 3600)
    assert t.year_lo == YLO and t.year_hi == YHI


def test_tzdata_version_recorded(tables):
    assert tz.tzdata_version() == tzdata.IANA_VERSION
    assert tables.tzdata_version == tzdata.IANA_VERSION
    d = tables.digest()
    assert d == tz.build_tz_tables(ZONES, YLO, YHI).digest()
    assert dataclasses.replace(tables, tzdata_version="1999z").digest() != d
    assert tz.build_tz_tables(ZONES, YLO, YHI + 1).digest() != d


# ------------------------------------------------------------------------------------------
# exactness against zoneinfo, every zone
# ------------------------------------------------------------------------------------------


def test_every_zone_random_and_stratified_instants(tables, refs):
    """300 random instants per zone + one random instant in every 3-day block of 2020-2035.

    The stratified part means any offset period of 3 days or more missing from (or invented by)
    the tables would be seen; the vector path computes all our offsets in one call.
    """
    rng = np.random.default_rng(20240611)
    n_blocks = (T_HI - T_LO) // (3 * 86400)
    per_zone = []
    for _ in ZONES:
        rnd = rng.integers(T_LO, T_HI, 300)
        strat = T_LO + np.arange(n_blocks) * 3 * 86400 + rng.integers(0, 3 * 86400, n_blocks)
        per_zone.append(np.concatenate([rnd, strat]))
    secs = np.concatenate(per_zone)
    zidx = np.repeat(np.arange(len(ZONES)), [a.size for a in per_zone])
    ours = (tz.to_local_us(tables, zidx, secs * US) - secs * US) // US
    bad = []
    pos = 0
    for z, s_arr in zip(ZONES, per_zone, strict=True):
        zi = refs[z]
        for k, s in enumerate(s_arr.tolist()):
            ref = datetime.fromtimestamp(s, zi).utcoffset() // timedelta(seconds=1)
            if ref != ours[pos + k]:
                bad.append((z, s, ref, int(ours[pos + k])))
        pos += s_arr.size
    assert not bad, bad[:20]


def test_every_transition_plus_minus_one_us(tables, refs):
    """At each table transition in 2020-2035: old offset 1 µs before, new offset at and after;
    in a gap the skipped wall times and in a fold the repeated ones behave as zoneinfo says."""
    n_checked = 0
    bad = []
    for i, z in enumerate(ZONES):
        zi = refs[z]
        ts, off = zone_slice(tables, i)
        for k in range(1, ts.size):
            t = int(ts[k])
            if not (T_LO * US <= t < T_HI * US):
                continue
            old, new = int(off[k - 1]), int(off[k])
            got = (ref_offset_s(zi, t - 1), ref_offset_s(zi, t), ref_offset_s(zi, t + 1))
            if got != (old, new, new):
                bad.append((z, t, "utc", (old, new), got))
            for d in (-1, 0, 1):
                if tz.offset_at(tables.zone_start, tables.trans_us, tables.offset_s, i, t + d) != (
                    old if d < 0 else new
                ):
                    bad.append((z, t, "njit", d))
            loc = tz.to_local_us(tables, np.array([i, i]), np.array([t - 1, t]))
            jump = int(loc[1] - loc[0])
            if jump != 1 + (new - old) * US:
                bad.append((z, t, "jump", jump))
            # Local wall time that is skipped (gap, new > old) or repeated (fold, new < old).
            wall_us = t + (old if new > old else new) * US
            wall = NAIVE_EPOCH + timedelta(microseconds=wall_us)
            f0 = wall.replace(tzinfo=zi, fold=0).utcoffset() // timedelta(seconds=1)
            f1 = wall.replace(tzinfo=zi, fold=1).utcoffset() // timedelta(seconds=1)
            if (f0, f1) != (old, new):
                bad.append((z, t, "gap" if new > old else "fold", (old, new), (f0, f1)))
            n_checked += 1
    assert n_checked > 5000
    assert not bad, bad[:20]


@pytest.mark.parametrize(
    ("ylo", "yhi", "n_per_zone"),
    [(1900, 2040, 60), (2095, 2105, 30)],
)
def test_other_eras(refs, ylo, yhi, n_per_zone):
    """Explicit-transition history (1900-2040) and far-future footer-only years."""
    t = tz.build_tz_tables(ZONES, ylo, yhi)
    lo, hi = tz.exact_range_us(ylo, yhi)
    rng = np.random.default_rng(ylo)
    secs = rng.integers(lo // US, hi // US, (len(ZONES), n_per_zone))
    zidx = np.broadcast_to(np.arange(len(ZONES))[:, None], secs.shape)
    ours = (tz.to_local_us(t, zidx, secs * US) - secs * US) // US
    bad = [
        (z, s)
        for i, z in enumerate(ZONES)
        for j, s in enumerate(secs[i].tolist())
        if ref_offset_s(refs[z], s * US) != ours[i, j]
    ]
    assert not bad, bad[:20]


# ------------------------------------------------------------------------------------------
# named zones: the ones the old table got wrong, odd offsets, hemispheres
# ------------------------------------------------------------------------------------------

DST_ZONES = [
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Havana",
    "America/Santiago",
    "America/Asuncion",
    "America/Nuuk",
    "America/Scoresbysund",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Berlin",
    "Europe/Chisinau",
    "Asia/Jerusalem",
    "Asia/Gaza",
    "Africa/Cairo",
    "Africa/Casablanca",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Pacific/Norfolk",
    "Antarctica/Troll",
    "America/Mexico_City",
    "Asia/Tehran",
]


@pytest.mark.parametrize("year", range(YLO, YHI + 1))
def test_table_for_year_is_exact_across_new_year(refs, year):
    """Tables built for exactly [Y, Y] give zoneinfo's offsets through the Dec 31 → Jan 1
    rollover (hourly over Dec 30 Y .. Jan 3 Y+1, plus the last µs of Y), through all of Y+1
    (the margin year), and refuse Y+2 instead of carrying a stale offset forward."""
    t = tz.build_tz_tables(DST_ZONES, year, year)
    assert tz.covers(t, year, year) and not tz.covers(t, year, year + 1)
    start = int(datetime(year, 12, 30, tzinfo=UTC).timestamp()) * US
    edge = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()) * US
    instants = [start + h * 3600 * US for h in range(24 * 5)] + [edge - 1, edge]
    # Whole margin year, every 2 days at a moving hour.
    instants += [edge + (d * 2 * 86400 + (d % 24) * 3600) * US for d in range(183)]
    ts = np.array(instants, dtype=np.int64)
    for i, z in enumerate(DST_ZONES):
        ours = (tz.to_local_us(t, np.full(ts.size, i), ts) - ts) // US
        ref = [ref_offset_s(refs[z], v) for v in instants]
        assert ours.tolist() == ref, z
    end = int(datetime(year + 2, 1, 1, tzinfo=UTC).timestamp()) * US
    assert tz.to_local_us(t, np.array([0]), np.array([end - 1]))[0] != 0
    with pytest.raises(EngineError) as ei:
        tz.to_local_us(t, np.array([0]), np.array([end]))
    assert ei.value.code == "TZ_OUT_OF_RANGE"


@pytest.mark.parametrize(
    ("zone", "when", "offset"),
    [
        ("America/New_York", (2035, 12, 31, 23), -5 * 3600),
        ("America/New_York", (2030, 7, 1, 12), -4 * 3600),
        ("Australia/Sydney", (2035, 12, 31, 23), 11 * 3600),  # southern summer: DST
        ("Australia/Sydney", (2030, 7, 1, 12), 10 * 3600),
        ("Asia/Kolkata", (2027, 3, 1, 0), 5 * 3600 + 1800),
        ("Asia/Kathmandu", (2027, 3, 1, 0), 5 * 3600 + 2700),
        ("Australia/Eucla", (2027, 1, 1, 0), 8 * 3600 + 2700),
        ("Australia/Lord_Howe", (2027, 1, 1, 0), 11 * 3600),  # 30-minute DST
        ("Australia/Lord_Howe", (2027, 7, 1, 0), 10 * 3600 + 1800),
        ("Pacific/Chatham", (2027, 1, 1, 0), 13 * 3600 + 2700),
        ("Pacific/Chatham", (2027, 7, 1, 0), 12 * 3600 + 2700),
        ("Europe/Dublin", (2027, 1, 1, 0), 0),  # "negative DST" in winter: still UTC+0
        ("Europe/Dublin", (2027, 7, 1, 0), 3600),
        ("Asia/Tehran", (2027, 7, 1, 0), 3 * 3600 + 1800),  # DST abolished 2022
        ("America/Sao_Paulo", (2027, 1, 1, 0), -3 * 3600),  # DST abolished 2019
        ("UTC", (2027, 7, 1, 0), 0),
        ("Etc/GMT+5", (2027, 7, 1, 0), -5 * 3600),
    ],
)
def test_known_offsets(tables, zone, when, offset):
    ts = int(datetime(*when, tzinfo=UTC).timestamp()) * US
    i = tables.zone_index(zone)
    assert tz.offset_at(tables.zone_start, tables.trans_us, tables.offset_s, i, ts) == offset


# ------------------------------------------------------------------------------------------
# POSIX footer rules, including forms tzdata does not currently use
# ------------------------------------------------------------------------------------------


def tzif_with_footer(footer: str, std_utoff: int) -> bytes:
    """A minimal TZif v2 file: no transitions, one time type, the given footer."""
    counts = struct.pack(">6l", 0, 0, 0, 0, 1, 4)
    header = b"TZif2" + bytes(15) + counts
    block = struct.pack(">lBB", std_utoff, 0, 0) + b"ABC\0"
    return header + block + header + block + b"\n" + footer.encode() + b"\n"


ZI, LIBC = "zoneinfo", "libc"
FOOTERS = [
    ("EST5EDT,M3.2.0,M11.1.0", -18000, (ZI, LIBC)),
    ("<+0530>-5:30", 19800, (ZI, LIBC)),
    ("<-03>3<-02>,J60/2,J300/2", -10800, (ZI, LIBC)),  # Julian days, Feb 29 never counted
    # CPython's zoneinfo puts J59 on Feb 29 in leap years and zero-based day n one day early;
    # POSIX (and the C library) say J59 is always Feb 28 and n=59 is Mar 1 / Feb 29 (leap).
    ("AAA3BBB,J59/2,J300/2", -10800, (LIBC,)),
    ("AAA3BBB,59/2,299/2", -10800, (LIBC,)),
    # DST all year (RFC 8536 §3.3.1); glibc shows standard time for the last hour of the year.
    ("AAA-1BBB,0/0,J365/25", 3600, (ZI,)),
    ("<-02>2<-01>,M3.5.0/-1,M10.5.0/0", -7200, (ZI, LIBC)),  # negative switch time
    ("EET-2EEST,M3.4.4/50,M10.4.4/50", 7200, (ZI, LIBC)),  # switch time beyond 24 h
    ("IST-2IDT,M3.4.4/26,M10.5.0", 7200, (ZI, LIBC)),
    ("<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45", 45900, (ZI, LIBC)),  # southern, :45
    ("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", 37800, (ZI, LIBC)),  # 30-minute DST
    ("IST-1GMT0,M10.5.0,M3.5.0/1", 3600, (ZI, LIBC)),  # "negative DST"
    ("<-04>4<-03>,M9.1.6/24,M4.1.6/24", -14400, (ZI, LIBC)),
    ("AAA+3:15:30BBB+2:00:15,M4.1.0/1:02:03,M9.5.6/23:59:59", -11730, (ZI, LIBC)),
    ("AAA5BBB4,M3.2.0/-100,M11.1.0/100", -18000, (ZI, LIBC)),
    ("<-01>1<+00>,M3.5.0/0,M10.5.0/1", -3600, (ZI, LIBC)),
    ("AAA-2BBB,M2.5.4/167,M10.5.0/-167", 7200, (ZI, LIBC)),
]


def libc_offsets(footer: str, secs: list[int]) -> list[int]:
    """Offsets the C library's tzset/localtime give for TZ=footer (independent parser)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = footer
    time.tzset()
    try:
        return [time.localtime(s).tm_gmtoff for s in secs]
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.mark.parametrize(("footer", "std", "refs"), FOOTERS)
def test_footer_rule_matches_references(footer, std, refs):
    """Footer-only TZif files: our switches vs zoneinfo and/or the C library, 1970-2100."""
    data = tzif_with_footer(footer, std)
    zone = tz.parse_tzif(data)
    lo, hi = tz.exact_range_us(1971, 2099)
    ts, off = tz._zone_steps(zone, lo // US, hi // US)
    assert ts.size > 200 or tz.parse_posix_tz(footer).dst_off is None
    rng = np.random.default_rng(7)
    probes = rng.integers(lo // US, hi // US, 3000).tolist()
    for k in range(1, ts.size):
        probes += [int(ts[k]) // US - 1, int(ts[k]) // US]
    ours = np.asarray(off)[np.searchsorted(ts, np.array(probes) * US, side="right") - 1].tolist()
    if ZI in refs:
        zi = zoneinfo.ZoneInfo.from_file(io.BytesIO(data), key="Test/Footer")
        assert ours == [ref_offset_s(zi, p * US) for p in probes]
    if LIBC in refs and hasattr(time, "tzset"):
        assert ours == libc_offsets(footer, probes)


@pytest.mark.parametrize(
    "footer",
    [
        "",
        "EST",
        "5EST",
        "EST5EDT,M3.2.0",
        "EST5EDT,M13.2.0,M11.1.0",
        "EST5EDT,M3.6.0,M11.1.0",
        "EST5EDT,M3.2.7,M11.1.0",
        "EST5EDT,M3.2.0,M11.1.0/168",
        "EST25",
        "<EST5",
        "EST5EDT,J0,J365",
        "EST5EDT,366,1",
        "EST5EDT,M3.2.0,M11.1.0x",
        "EST5:60",
    ],
)
def test_bad_footer_rejected(footer):
    with pytest.raises(ValueError):
        tz.parse_posix_tz(footer)


def test_footer_defaults():
    r = tz.parse_posix_tz("EST5EDT,M3.2.0,M11.1.0")
    assert (r.std_off, r.dst_off, r.start.time_s, r.end.time_s) == (-18000, -14400, 7200, 7200)
    r = tz.parse_posix_tz("EST5EDT")  # no rules: US rules
    assert (r.start.a, r.start.w, r.end.a, r.end.w) == (3, 2, 11, 1)
    assert tz.parse_posix_tz("<+0545>-5:45").dst_off is None


def test_bad_tzif_rejected():
    for data in (b"", b"NOPE" + bytes(60), tzif_with_footer("EST5", -18000)[:50]):
        with pytest.raises(ValueError):
            tz.parse_tzif(data)


# ------------------------------------------------------------------------------------------
# API behaviour
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "Mars/Olympus_Mons",
        "",
        "america/new_york",
        "../zoneinfo/UTC",
        "zone.tab",
        "tzdata.zi",
        "__init__.py",
        "localtime",
        "America/",
        42,
        None,
    ],
)
def test_unknown_tzid(bad):
    with pytest.raises(EngineError) as ei:
        tz.build_tz_tables(["UTC", bad, "Europe/Paris"], YLO, YHI)
    e = ei.value
    assert e.code == "TZ_UNKNOWN" and e.column == "tzid" and e.key == bad


def test_bad_year_ranges():
    for lo, hi in [(2030, 2020), (999, 2000), (2000, 9001), (2020.5, 2021), ("2020", 2021)]:
        with pytest.raises(EngineError) as ei:
            tz.build_tz_tables(["UTC"], lo, hi)
        assert ei.value.code == "TZ_INPUT_INVALID"
    with pytest.raises(EngineError):
        tz.build_tz_tables("UTC", 2020, 2021)


def test_covers(tables):
    assert tz.covers(tables, YLO, YHI)
    assert tz.covers(tables, 2021, 2030)
    assert tz.covers(tables, YHI, YHI)
    assert not tz.covers(tables, YLO - 1, YHI)
    assert not tz.covers(tables, YLO, YHI + 1)
    assert not tz.covers(tables, 2030, 2025)


def test_exact_range():
    lo, hi = tz.exact_range_us(2024, 2026)
    assert lo == int(datetime(2023, 1, 1, tzinfo=UTC).timestamp()) * US
    assert hi == int(datetime(2028, 1, 1, tzinfo=UTC).timestamp()) * US


def test_duplicates_and_order_kept():
    t = tz.build_tz_tables(["Europe/Paris", "UTC", "Europe/Paris"], YLO, YLO)
    assert t.tzids == ("Europe/Paris", "UTC", "Europe/Paris")
    assert t.zone_index("UTC") == 1
    a, b = zone_slice(t, 0), zone_slice(t, 2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(EngineError) as ei:
        t.zone_index("Asia/Tokyo")
    assert ei.value.code == "TZ_UNKNOWN"
    empty = tz.build_tz_tables([], YLO, YLO)
    assert empty.n_zones == 0 and empty.zone_start.tolist() == [0]


def test_njit_and_vector_paths_agree(tables):
    rng = np.random.default_rng(3)
    lo, hi = tz.exact_range_us(YLO, YHI)
    n = 20_000
    zidx = rng.integers(0, len(ZONES), n)
    ts = rng.integers(lo, hi, n)
    vec = tz.to_local_us(tables, zidx, ts)
    loop = np.array(
        [
            t + tz.offset_at(tables.zone_start, tables.trans_us, tables.offset_s, z, t) * US
            for z, t in zip(zidx.tolist(), ts.tolist(), strict=True)
        ]
    )
    assert np.array_equal(vec, loop)
    assert vec.dtype == np.int64
    # other input forms: int32 indices, 2-D shapes, scalar zone broadcast, datetime64, empty
    two_d = tz.to_local_us(tables, zidx.astype(np.int32).reshape(100, 200), ts.reshape(100, 200))
    assert np.array_equal(two_d.ravel(), vec)
    bcast = tz.to_local_us(tables, np.int64(zidx[0]), ts[:50])
    assert np.array_equal(bcast, tz.to_local_us(tables, np.full(50, zidx[0]), ts[:50]))
    dt64 = tz.to_local_us(tables, zidx[:50], ts[:50].astype("datetime64[us]"))
    assert np.array_equal(dt64, vec[:50])
    assert tz.to_local_us(tables, np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0,)


def test_to_local_us_rejects_bad_input(tables):
    lo, hi = tz.exact_range_us(YLO, YHI)
    ok = tz.to_local_us(tables, np.array([0, 0]), np.array([lo, hi - 1]))
    assert ok.shape == (2,)
    for ts in (lo - 1, hi):
        with pytest.raises(EngineError) as ei:
            tz.to_local_us(tables, np.array([0]), np.array([ts]))
        assert ei.value.code == "TZ_OUT_OF_RANGE"
    unchecked = tz.to_local_us(tables, np.array([0]), np.array([hi]), check_range=False)
    assert unchecked.shape == (1,)
    for z in (-1, len(ZONES)):
        with pytest.raises(EngineError) as ei:
            tz.to_local_us(tables, np.array([z]), np.array([lo]))
        assert ei.value.code == "TZ_INPUT_INVALID"
    with pytest.raises(EngineError) as ei:
        tz.to_local_us(tables, np.array([0]), np.array([1.5]))
    assert ei.value.code == "TZ_INPUT_INVALID"
    with pytest.raises(EngineError) as ei:
        tz.to_local_us(tables, np.array([0, 1, 2]), np.array([lo, lo]))
    assert ei.value.code == "TZ_INPUT_INVALID"


def test_build_speed():
    some = ZONES[::4][:139]
    tz._load_zone.cache_clear()
    t0 = time.perf_counter()
    tz.build_tz_tables(some, 2024, 2026)
    small = time.perf_counter() - t0
    tz._load_zone.cache_clear()
    t0 = time.perf_counter()
    tz.build_tz_tables(ZONES, 2020, 2035)
    full = time.perf_counter() - t0
    assert small < 1.0, small
    assert full < 5.0, full
