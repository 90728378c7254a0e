"""Exact UTC → local-time offsets for IANA zones, from the installed ``tzdata`` package.

Rules come from the TZif files shipped inside the ``tzdata`` wheel, read with
``importlib.resources`` (never from ``/usr/share/zoneinfo``, whose version depends on the host).
For every requested zone the 64-bit (v2+) transition list is parsed; past its last explicit
transition the POSIX TZ footer rule (``EST5EDT,M3.2.0,M11.1.0``, ``<+1030>-10:30<+11>-11,...``)
is evaluated year by year. The result is cut to the window the caller asked for and packed as
CSR arrays that Numba kernels search. See docs/timezones.md.

Window: a table built for ``[year_lo, year_hi]`` is exact for every UTC instant in
``[Jan 1 (year_lo - 1), Jan 1 (year_hi + 2))`` — one full year of margin on each side of what
was asked for. ``to_local_us`` refuses instants outside that window (``TZ_OUT_OF_RANGE``)
instead of silently extending the last offset.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import tzdata

from engine_core.errors import EngineError
from engine_core.kernels.zone_offsets import offset_at, to_local_kernel
from engine_core.timebase import SECONDS_PER_DAY as _S_PER_DAY
from engine_core.timebase import US_PER_S

__all__ = [
    "TzTables",
    "available_tzids",
    "build_tz_tables",
    "covers",
    "exact_range_us",
    "offset_at",
    "to_local_us",
    "tzdata_version",
    "zoneinfo_from_tzdata",
]

INT64_MIN = np.iinfo(np.int64).min
# Years accepted by build_tz_tables; the window adds two years of margin on each side and the
# footer evaluation a few more, all far inside int64 microseconds.
_YEAR_MIN = 1000
_YEAR_MAX = 9000


# --------------------------------------------------------------------------------------------
# Public table type
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TzTables:
    """Per-zone offset step functions in CSR layout.

    Zone ``i`` (name ``tzids[i]``) owns entries ``zone_start[i] : zone_start[i+1]`` of
    ``trans_us``/``offset_s``; entry ``k`` says "from UTC instant ``trans_us[k]`` (µs, inclusive)
    the total UTC offset is ``offset_s[k]`` seconds". The first entry of every zone is
    ``INT64_MIN``; consecutive entries of a zone always differ in offset. Arrays are read-only.
    """

    tzids: tuple[str, ...]
    zone_start: np.ndarray
    trans_us: np.ndarray
    offset_s: np.ndarray
    year_lo: int
    year_hi: int
    tzdata_version: str

    @property
    def n_zones(self) -> int:
        return len(self.tzids)

    def zone_index(self, tzid: str) -> int:
        """Index of ``tzid`` in ``tzids`` (first occurrence); TZ_UNKNOWN if absent."""
        try:
            return self.tzids.index(tzid)
        except ValueError:
            raise EngineError(
                "TZ_UNKNOWN", "time zone is not in these tables", column="tzid", key=tzid
            ) from None

    def digest(self) -> str:
        """sha256 over tzdata version, year range, zone names and arrays (output identity)."""
        h = hashlib.sha256()
        h.update(f"tzdata={self.tzdata_version};years={self.year_lo}-{self.year_hi};".encode())
        h.update("\x1f".join(self.tzids).encode())
        for a in (self.zone_start, self.trans_us, self.offset_s):
            h.update(b"\x1e")
            h.update(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes())
        return h.hexdigest()


def tzdata_version() -> str:
    """IANA release of the installed ``tzdata`` package (e.g. ``"2026f"``)."""
    return str(tzdata.IANA_VERSION)


@lru_cache(maxsize=1)
def available_tzids() -> frozenset[str]:
    """Every zone name (canonical and link) the installed ``tzdata`` package ships."""
    text = importlib.resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def zoneinfo_from_tzdata(tzid: str) -> ZoneInfo:
    """A ``ZoneInfo`` built from the ``tzdata`` package's bytes for ``tzid``.

    ``ZoneInfo(tzid)`` searches the system TZPATH first and only falls back to ``tzdata``; on a
    host whose ``/usr/share/zoneinfo`` is older or newer it disagrees with these tables. Use this
    when Python-side code must agree with them. Not cached: each call builds a new object.
    """
    data = _read_tzif(tzid)
    return ZoneInfo.from_file(io.BytesIO(data), key=tzid)


def exact_range_us(year_lo: int, year_hi: int) -> tuple[int, int]:
    """Half-open UTC µs window ``[Jan 1 (year_lo-1), Jan 1 (year_hi+2))`` tables are exact on."""
    return (
        _days_from_civil(year_lo - 1, 1, 1) * _S_PER_DAY * US_PER_S,
        _days_from_civil(year_hi + 2, 1, 1) * _S_PER_DAY * US_PER_S,
    )


def covers(tables: TzTables, year_lo: int, year_hi: int) -> bool:
    """True iff ``tables`` are exact for every UTC instant of years ``year_lo..year_hi``."""
    return (
        int(year_lo) <= int(year_hi)
        and tables.year_lo <= int(year_lo)
        and int(year_hi) <= tables.year_hi
    )


# --------------------------------------------------------------------------------------------
# Civil calendar helpers (proleptic Gregorian, days since 1970-01-01)
# --------------------------------------------------------------------------------------------


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _year_of_days(z: int) -> int:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2)


def _is_leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _month_len(y: int, m: int) -> int:
    return 29 if (m == 2 and _is_leap(y)) else _MONTH_DAYS[m - 1]


# --------------------------------------------------------------------------------------------
# POSIX TZ footer rule
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DateRule:
    kind: str  # "J" (1..365, Feb 29 never counted), "N" (0..365, Feb 29 counted), "M"
    a: int  # J/N: day number; M: month
    w: int = 0  # M: week 1..5 (5 = last)
    d: int = 0  # M: weekday 0..6 (0 = Sunday)
    time_s: int = 7200  # local time of the switch, seconds from local midnight (may be <0, >24h)

    def day(self, year: int) -> int:
        """Days since the epoch of the rule's date in ``year``."""
        if self.kind == "J":
            doy = self.a - 1
            if self.a >= 60 and _is_leap(year):
                doy += 1
            return _days_from_civil(year, 1, 1) + doy
        if self.kind == "N":
            return _days_from_civil(year, 1, 1) + self.a
        first = _days_from_civil(year, self.a, 1)
        wd_first = (first + 4) % 7  # 1970-01-01 was a Thursday (4)
        off = (self.d - wd_first) % 7 + 7 * (self.w - 1)
        n = _month_len(year, self.a)
        while off >= n:  # week 5 means "last": step back into the month
            off -= 7
        return first + off


@dataclass(frozen=True)
class _PosixRule:
    std_off: int  # UTC offset east-positive, seconds
    dst_off: int | None = None
    start: _DateRule | None = None  # switch std → dst, time in standard local time
    end: _DateRule | None = None  # switch dst → std, time in daylight local time

    def transitions(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """All switches of years ``y0..y1`` as sorted (UTC seconds, new offset) arrays.

        Ties (an end and the next start on the same instant: DST all year) resolve to the start,
        so ``0/0,J365/25`` keeps daylight time across the new year.
        """
        if self.dst_off is None or self.start is None or self.end is None or y1 < y0:
            return np.zeros(0, np.int64), np.zeros(0, np.int32)
        ev: list[tuple[int, int, int]] = []
        for y in range(y0, y1 + 1):
            ev.append(
                (self.end.day(y) * _S_PER_DAY + self.end.time_s - self.dst_off, 0, self.std_off)
            )
            ev.append(
                (self.start.day(y) * _S_PER_DAY + self.start.time_s - self.std_off, 1, self.dst_off)
            )
        ev.sort()
        t = np.array([e[0] for e in ev], dtype=np.int64)
        o = np.array([e[2] for e in ev], dtype=np.int32)
        return t, o


_NAME_RE = re.compile(r"<([A-Za-z0-9+\-]+)>|([A-Za-z]+)", re.ASCII)
_HMS_RE = re.compile(r"([+-]?)(\d{1,3})(?::(\d{1,2})(?::(\d{1,2}))?)?", re.ASCII)
_M_RE = re.compile(r"M(\d{1,2})\.(\d)\.(\d)", re.ASCII)
_J_RE = re.compile(r"(J?)(\d{1,3})", re.ASCII)


def _parse_hms(s: str, pos: int, max_h: int) -> tuple[int, int]:
    m = _HMS_RE.match(s, pos)
    if m is None:
        raise ValueError(f"expected [+-]hh[:mm[:ss]] at {pos}")
    h, mi, se = int(m.group(2)), int(m.group(3) or 0), int(m.group(4) or 0)
    if h > max_h or mi > 59 or se > 59:
        raise ValueError(f"time field out of range: {m.group(0)!r}")
    v = h * 3600 + mi * 60 + se
    return (-v if m.group(1) == "-" else v), m.end()


def _parse_date_rule(s: str, pos: int) -> tuple[_DateRule, int]:
    m = _M_RE.match(s, pos)
    if m is not None:
        mo, w, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if not (1 <= mo <= 12 and 1 <= w <= 5 and 0 <= d <= 6):
            raise ValueError(f"bad M rule {m.group(0)!r}")
        kind, a, pos = "M", mo, m.end()
    else:
        m = _J_RE.match(s, pos)
        if m is None:
            raise ValueError(f"expected a date rule at {pos}")
        a = int(m.group(2))
        if m.group(1):
            kind = "J"
            if not 1 <= a <= 365:
                raise ValueError(f"bad Julian day {a}")
        else:
            kind = "N"
            if not 0 <= a <= 365:
                raise ValueError(f"bad day of year {a}")
        pos = m.end()
        mo, w, d = a, 0, 0
    time_s = 7200
    if pos < len(s) and s[pos] == "/":
        time_s, pos = _parse_hms(s, pos + 1, 167)
    if kind == "M":
        return _DateRule("M", mo, w, d, time_s), pos
    return _DateRule(kind, a, 0, 0, time_s), pos


def _parse_name(s: str, pos: int) -> int:
    m = _NAME_RE.match(s, pos)
    if m is None or len(m.group(1) or m.group(2)) < 1:
        raise ValueError(f"expected a zone abbreviation at {pos}")
    return m.end()


def parse_posix_tz(s: str) -> _PosixRule:
    """Parse a POSIX TZ string as zic writes it in TZif footers (RFC 8536 §3.3).

    ``std offset [dst [offset] [,start[/time],end[/time]]]``; offsets are positive west of
    Greenwich; ``start``/``end`` are ``Jn``, ``n`` or ``Mm.w.d``; times may be negative or beyond
    24 h (up to ±167 h). Raises ValueError on malformed input.
    """
    pos = _parse_name(s, 0)
    posix_std, pos = _parse_hms(s, pos, 24)
    std_off = -posix_std
    if pos == len(s):
        return _PosixRule(std_off)
    pos = _parse_name(s, pos)
    dst_off = std_off + 3600
    if pos < len(s) and s[pos] != ",":
        posix_dst, pos = _parse_hms(s, pos, 24)
        dst_off = -posix_dst
    if pos == len(s):
        # No rules given: POSIX leaves this implementation-defined; zic never writes it. Use
        # the US rules, as glibc does.
        return _PosixRule(std_off, dst_off, _DateRule("M", 3, 2, 0), _DateRule("M", 11, 1, 0))
    if s[pos] != ",":
        raise ValueError(f"expected ',' at {pos}")
    start, pos = _parse_date_rule(s, pos + 1)
    if pos >= len(s) or s[pos] != ",":
        raise ValueError(f"expected ',' at {pos}")
    end, pos = _parse_date_rule(s, pos + 1)
    if pos != len(s):
        raise ValueError(f"trailing characters at {pos}")
    return _PosixRule(std_off, dst_off, start, end)


# --------------------------------------------------------------------------------------------
# TZif parsing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Zone:
    trans_s: np.ndarray  # int64 UTC seconds of explicit transitions (sorted)
    offsets: np.ndarray  # int32 offset in effect from trans_s[k]
    before: int  # offset before the first transition (time type 0, RFC 8536 §3.2)
    rule: _PosixRule | None  # footer; None for v1 files or an empty footer


_TTINFO = np.dtype([("utoff", ">i4"), ("isdst", "u1"), ("idx", "u1")])


def parse_tzif(data: bytes) -> _Zone:
    """Parse TZif bytes (RFC 8536, v1..v4): 64-bit transitions and the footer when present.

    Raises ValueError on malformed input or leap-second ("right/") data.
    """
    if len(data) < 44 or data[:4] != b"TZif":
        raise ValueError("not a TZif file")
    version = data[4:5]

    def counts(off: int) -> tuple[int, ...]:
        if off + 44 > len(data) or data[off : off + 4] != b"TZif":
            raise ValueError("truncated or corrupt TZif header")
        return struct.unpack(">6l", data[off + 20 : off + 44])

    isut, isstd, leap, timecnt, typecnt, charcnt = counts(0)
    tsize = 4
    pos = 44
    if version >= b"2":
        v1_len = timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut
        pos = 44 + v1_len
        isut, isstd, leap, timecnt, typecnt, charcnt = counts(pos)
        pos += 44
        tsize = 8
    if leap:
        raise ValueError("leap-second TZif data is not supported")
    if typecnt < 1:
        raise ValueError("TZif file has no local time types")
    need = timecnt * (tsize + 1) + typecnt * 6 + charcnt + leap * (tsize + 4) + isstd + isut
    if pos + need > len(data):
        raise ValueError("truncated TZif data block")
    tdt = ">i8" if tsize == 8 else ">i4"
    trans = np.frombuffer(data, dtype=tdt, count=timecnt, offset=pos).astype(np.int64)
    pos += timecnt * tsize
    idx = np.frombuffer(data, dtype=np.uint8, count=timecnt, offset=pos).astype(np.int64)
    pos += timecnt
    tt = np.frombuffer(data, dtype=_TTINFO, count=typecnt, offset=pos)
    pos += typecnt * 6 + charcnt + leap * (tsize + 4) + isstd + isut
    if timecnt and int(idx.max()) >= typecnt:
        raise ValueError("transition refers to a missing local time type")
    if timecnt > 1 and not bool(np.all(np.diff(trans) > 0)):
        raise ValueError("transition times are not increasing")
    utoff = tt["utoff"].astype(np.int32)
    rule = None
    if version >= b"2":
        if pos >= len(data) or data[pos : pos + 1] != b"\n":
            raise ValueError("missing TZ string footer")
        end = data.find(b"\n", pos + 1)
        if end < 0:
            raise ValueError("unterminated TZ string footer")
        footer = data[pos + 1 : end].decode("ascii")
        if footer:
            rule = parse_posix_tz(footer)
    return _Zone(trans, utoff[idx], int(utoff[0]), rule)


def _bad_tzid(tzid: object) -> EngineError:
    return EngineError(
        "TZ_UNKNOWN",
        f"unknown IANA time zone (tzdata {tzdata_version()})",
        column="tzid",
        key=tzid,
    )


def _read_tzif(tzid: object) -> bytes:
    if not isinstance(tzid, str) or tzid not in available_tzids():
        raise _bad_tzid(tzid)
    node = importlib.resources.files("tzdata.zoneinfo")
    for part in tzid.split("/"):
        node = node.joinpath(part)
    try:
        return node.read_bytes()
    except OSError:
        raise _bad_tzid(tzid) from None


@cache
def _load_zone(tzid: str) -> _Zone:
    data = _read_tzif(tzid)
    try:
        return parse_tzif(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EngineError(
            "TZ_DATA_INVALID", f"cannot read tzdata rules: {exc}", column="tzid", key=tzid
        ) from None


def _zone_steps(zone: _Zone, lo_s: int, hi_s: int) -> tuple[np.ndarray, np.ndarray]:
    """The zone's step function restricted to UTC seconds ``[lo_s, hi_s)``.

    Returns (trans_us, offset_s) with ``trans_us[0] = INT64_MIN`` carrying the offset in force at
    ``lo_s``, then every offset change in ``(lo_s, hi_s)``, deduplicated.
    """
    t, o = zone.trans_s, zone.offsets
    before = zone.before
    rule = zone.rule
    if rule is not None:
        y_lo = _year_of_days(lo_s // _S_PER_DAY) - 2
        y_hi = _year_of_days(hi_s // _S_PER_DAY) + 1
        if rule.dst_off is None:
            if t.size == 0:
                before = rule.std_off
        else:
            if t.size:
                y_lo = max(y_lo, _year_of_days(int(t[-1]) // _S_PER_DAY) - 1)
            ft, fo = rule.transitions(y_lo, y_hi)
            if t.size:
                keep = ft > t[-1]
                ft, fo = ft[keep], fo[keep]
            elif ft.size:
                # Footer-only zone: before its first generated switch the other offset holds.
                before = int(fo[1]) if ft.size > 1 else int(fo[0])
            if ft.size:
                t = np.concatenate([t, ft])
                o = np.concatenate([o, fo])
    k0 = int(np.searchsorted(t, lo_s, side="right")) - 1
    first = before if k0 < 0 else int(o[k0])
    k1 = int(np.searchsorted(t, hi_s, side="left"))
    mid_t = t[k0 + 1 : k1]
    mid_o = o[k0 + 1 : k1]
    all_t = np.empty(mid_t.size + 1, np.int64)
    all_o = np.empty(mid_t.size + 1, np.int32)
    all_t[0] = INT64_MIN
    all_t[1:] = mid_t * US_PER_S
    all_o[0] = first
    all_o[1:] = mid_o
    if all_o.size > 1:
        keep = np.ones(all_o.size, dtype=bool)
        keep[1:] = all_o[1:] != all_o[:-1]
        all_t, all_o = all_t[keep], all_o[keep]
    return all_t, all_o


def build_tz_tables(tzids: Sequence[str], year_lo: int, year_hi: int) -> TzTables:
    """Offset tables for ``tzids`` (order kept, duplicates allowed), exact on
    ``exact_range_us(year_lo, year_hi)``.

    Unknown tzid → ``EngineError("TZ_UNKNOWN", column="tzid", key=tzid)``; a bad year range →
    ``TZ_INPUT_INVALID``; unreadable tzdata bytes → ``TZ_DATA_INVALID``.
    """
    if isinstance(tzids, str):
        raise EngineError(
            "TZ_INPUT_INVALID", "tzids must be a sequence of names, not a str", column="tzid"
        )
    try:
        ylo, yhi = int(year_lo), int(year_hi)
    except (TypeError, ValueError):
        raise EngineError("TZ_INPUT_INVALID", "years must be integers") from None
    if ylo != year_lo or yhi != year_hi or not (_YEAR_MIN <= ylo <= yhi <= _YEAR_MAX):
        raise EngineError(
            "TZ_INPUT_INVALID",
            f"need integer years with {_YEAR_MIN} <= year_lo <= year_hi <= {_YEAR_MAX}, "
            f"got {year_lo!r}..{year_hi!r}",
        )
    names = tuple(tzids)
    lo_us, hi_us = exact_range_us(ylo, yhi)
    lo_s, hi_s = lo_us // US_PER_S, hi_us // US_PER_S
    ts_parts: list[np.ndarray] = []
    off_parts: list[np.ndarray] = []
    zone_start = np.zeros(len(names) + 1, dtype=np.int64)
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, name in enumerate(names):
        steps = cache.get(name) if isinstance(name, str) else None
        if steps is None:
            steps = _zone_steps(_load_zone(_checked_name(name)), lo_s, hi_s)
            cache[name] = steps
        ts_parts.append(steps[0])
        off_parts.append(steps[1])
        zone_start[i + 1] = zone_start[i] + steps[0].size
    trans_us = np.concatenate(ts_parts) if ts_parts else np.zeros(0, np.int64)
    offset_s = np.concatenate(off_parts) if off_parts else np.zeros(0, np.int32)
    for a in (zone_start, trans_us, offset_s):
        a.setflags(write=False)
    return TzTables(
        tzids=names,
        zone_start=zone_start,
        trans_us=trans_us,
        offset_s=offset_s,
        year_lo=ylo,
        year_hi=yhi,
        tzdata_version=tzdata_version(),
    )


def _checked_name(name: object) -> str:
    if not isinstance(name, str) or name not in available_tzids():
        raise _bad_tzid(name)
    return name


def _as_int64(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind == "M":
        return a.astype("datetime64[us]").view(np.int64)
    if a.dtype.kind not in "iu":
        raise EngineError("TZ_INPUT_INVALID", f"{what} must be an integer array, got {a.dtype}")
    return a.astype(np.int64, copy=False)


def to_local_us(
    tables: TzTables, zone_idx: np.ndarray, ts_us: np.ndarray, *, check_range: bool = True
) -> np.ndarray:
    """Local wall-clock µs ``ts_us + offset_s * 1e6`` for each (zone index, UTC µs) pair.

    ``zone_idx`` and ``ts_us`` broadcast against each other; ``ts_us`` may also be
    ``datetime64``. A zone index outside the tables, or (with ``check_range``) an instant
    outside ``exact_range_us(tables.year_lo, tables.year_hi)``, raises EngineError
    (``TZ_INPUT_INVALID`` / ``TZ_OUT_OF_RANGE``) rather than returning a guessed offset.
    """
    z = _as_int64(zone_idx, "zone_idx")
    t = _as_int64(ts_us, "ts_us")
    try:
        z, t = np.broadcast_arrays(z, t)
    except ValueError:
        raise EngineError(
            "TZ_INPUT_INVALID", f"zone_idx shape {z.shape} and ts_us shape {t.shape} differ"
        ) from None
    shape = t.shape
    z = np.ascontiguousarray(z).reshape(-1)
    t = np.ascontiguousarray(t).reshape(-1)
    out = np.empty(t.size, dtype=np.int64)
    if t.size == 0:
        return out.reshape(shape)
    if check_range:
        lo_us, hi_us = exact_range_us(tables.year_lo, tables.year_hi)
    else:
        lo_us, hi_us = INT64_MIN, np.iinfo(np.int64).max
    bad_zone, bad_ts = to_local_kernel(
        tables.zone_start,
        tables.trans_us,
        tables.offset_s,
        z,
        t,
        out,
        np.int64(lo_us),
        np.int64(hi_us),
    )
    if bad_zone:
        raise EngineError(
            "TZ_INPUT_INVALID",
            f"{bad_zone} zone indices outside [0, {tables.n_zones})",
            column="zone_idx",
        )
    if check_range and bad_ts:
        raise EngineError(
            "TZ_OUT_OF_RANGE",
            f"{bad_ts} instants outside the tables' exact window (built for UTC years "
            f"{tables.year_lo}..{tables.year_hi}, plus one year of margin each side)",
            column="ts_us",
        )
    return out.reshape(shape)
