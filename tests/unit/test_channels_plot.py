from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

from monitoring.notify.channels.plot import plot_png, plot_window, store_plot_source
from monitoring.notify.model import Alert, Message

T0 = 1_767_225_600_000
PNG = b"\x89PNG\r\n\x1a\n"


def message(status: str = "firing") -> Message:
    a = Alert({"alertname": "HighCPU"}, {}, status, T0,
              T0 + 1_200_000 if status == "resolved" else None)
    return Message("m", "email", "firing", "g", (a,), T0 + 600_000)


def size(png: bytes) -> tuple[int, int]:
    assert png[:8] == PNG and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def series(n: int = 1) -> list[tuple[Mapping[str, str], Sequence[int], Sequence[float]]]:
    times = [T0 - 3_600_000 + i * 60_000 for i in range(80)]
    return [({"__name__": "cpu", "instance": f"i{k}"}, times, [k + i / 80 for i in range(80)])
            for k in range(n)]


def test_plot_png_is_a_png_of_the_asked_size() -> None:
    png = plot_png(series(), title="HighCPU", spans=[(T0, None, "firing")])
    assert size(png) == (800, 320)
    assert len(png) > 5_000
    assert size(plot_png(series(), width_px=400, height_px=200)) == (400, 200)


def test_many_series_still_plot() -> None:
    assert len(plot_png(series(20), title="many")) > 5_000


def test_window_covers_an_hour_before_and_ten_minutes_after() -> None:
    assert plot_window(message()) == (T0 - 3_600_000, T0 + 600_000 + 600_000)
    assert plot_window(message("resolved")) == (T0 - 3_600_000, T0 + 1_200_000 + 600_000)


def test_store_plot_source_passes_the_message_and_draws() -> None:
    seen: list[str] = []

    def read(m: Message) -> list[tuple[Mapping[str, str], Sequence[int], Sequence[float]]]:
        seen.append(m.id)
        return series(2)

    png = store_plot_source(read)(message())
    assert seen == ["m"]
    assert png is not None and size(png) == (800, 320)


def test_no_data_or_a_failing_reader_gives_no_plot() -> None:
    assert store_plot_source(lambda m: [])(message()) is None
    assert store_plot_source(lambda m: [({"a": "b"}, [], [])])(message()) is None

    def broken(m: Message) -> list[tuple[Mapping[str, str], Sequence[int], Sequence[float]]]:
        raise OSError("database is locked")

    assert store_plot_source(broken)(message()) is None
