"""Type stubs of the compiled module ``_native.c`` (see native.py)."""

from __future__ import annotations

from typing_extensions import Buffer

def search_right(ts: Buffer, keys: Buffer, out: Buffer, /) -> bool: ...
def lookup(ts: Buffer, values: Buffer, stale: Buffer | None, times: Buffer, lookback: int,
           out_values: Buffer, out_present: Buffer, out_stamps: Buffer | None, /) -> bool: ...
def extrapolated_rate(ts: Buffer, values: Buffer, ends: Buffer, range_ms: int,
                      range_seconds: float, is_counter: bool, is_rate: bool,
                      out_values: Buffer, out_present: Buffer, /) -> bool: ...
def window_sums(values: Buffer, lo: Buffer, hi: Buffer, mean: bool, out_total: Buffer,
                out_exact: Buffer, /) -> None: ...
