"""The receptive-field algebra (Araujo et al., "Computing receptive fields of CNNs", Distill 2019).

Per axis a field is (size, jump, start); a window maps it with ``through_window``, merges take the
union, and a layer that resamples (a transposed conv, upsampling) maps it with
``through_resampling``. Pure arithmetic, no layer knowledge. Jumps below one pixel (after
upsampling) are exact fractions (``fractions.Fraction``), so that 1/3 times 3 is 1 again.

``exact`` says whether every output unit has the field described, shifted by ``jump`` per unit.
A resampling layer whose units differ by phase (a stride-2 transposed conv: even and odd outputs
read different taps) is described by its *envelope*: the smallest interval, moving by ``jump`` per
unit, that contains every unit's field; each of its two edges is reached by some unit.
"""


from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterable


def plain(number: float) -> float | int:
    """A field number as JSON takes it: an int when whole, else a float (Fractions included)."""
    return int(number) if float(number).is_integer() and number == int(number) else float(number)


@dataclass(frozen=True)
class Axis:
    """Receptive field along one axis (Araujo et al.): size, jump (stride in input pixels) and
    start (centre of output unit 0, in input pixel coordinates); ``exact`` False when size and
    start describe the envelope of units that differ (see the module docstring)."""

    size: float
    jump: float
    start: float
    exact: bool = True

    def through_window(self, kernel: int, stride: float, pad_begin: float, dilation: int = 1) -> "Axis":
        """``size += (k'-1)*jump; start += ((k'-1)/2 - p)*jump; jump *= s`` with ``k' = d(k-1)+1``."""
        effective = dilation * (kernel - 1) + 1
        half = Fraction(effective - 1, 2) if isinstance(self.jump, Fraction) else (effective - 1) / 2
        return Axis(
            size=self.size + (effective - 1) * self.jump,
            jump=self.jump * stride,
            start=self.start + (half - pad_begin) * self.jump,
            exact=self.exact,
        )

    def through_resampling(self, ratio: Fraction, taps: Callable[[int], tuple[int, int] | None],
                           units: Iterable[int]) -> "Axis":
        """A layer whose output unit u reads input units ``taps(u) = (low, high)`` (None: none),
        with ``ratio`` input units per output unit on average (1/s for stride s upsampling).

        With offsets ``low(u) - u*ratio`` and ``high(u) - u*ratio`` over one period of ``units``,
        ``left`` the smallest and ``right`` the largest: ``size += (right - left)*jump``,
        ``start += (left + right)/2 * jump``, ``jump *= ratio``. For a window (taps u*s - p ..
        u*s - p + k' - 1, ratio s) this is ``through_window``; it is exact when every unit has the
        same offsets."""
        units = list(units)
        spans = [taps(u) for u in units]
        offsets = {(span[0] - u * ratio, span[1] - u * ratio) for u, span in zip(units, spans) if span is not None}
        left = min(low for low, _ in offsets)
        right = max(high for _, high in offsets)
        jump = self.jump if isinstance(self.jump, Fraction) else Fraction(self.jump)
        start = self.start if isinstance(self.start, Fraction) else Fraction(self.start)
        return Axis(
            size=self.size + (right - left) * jump,
            jump=jump * ratio,
            start=start + (left + right) / 2 * jump,
            exact=self.exact and len(offsets) == 1 and None not in spans,
        )

    @property
    def low(self) -> float:
        return self.start - (self.size - 1) / 2

    @property
    def high(self) -> float:
        return self.start + (self.size - 1) / 2


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one output unit, per axis (height, width)."""

    height: Axis
    width: Axis

    @classmethod
    def identity(cls) -> "ReceptiveField":
        return cls(Axis(1, 1, 0), Axis(1, 1, 0))

    @property
    def exact(self) -> bool:
        return self.height.exact and self.width.exact

    def to_dict(self) -> dict[str, list[float]]:
        """size, jump, start per axis; an envelope (not every unit alike) adds ``exact: [h, w]``."""
        axes = (self.height, self.width)
        data: dict[str, list] = {
            "size": [plain(a.size) for a in axes],
            "jump": [plain(a.jump) for a in axes],
            "start": [plain(a.start) for a in axes],
        }
        if not self.exact:
            data["exact"] = [a.exact for a in axes]
        return data

    @staticmethod
    def union(fields: "list[ReceptiveField]") -> "ReceptiveField":
        """Where paths merge the field is the union of the input fields (jumps agree for any
        well-formed merge; the largest is kept otherwise)."""

        def merge(axes: list[Axis]) -> Axis:
            low = min(a.low for a in axes)
            high = max(a.high for a in axes)
            exact = all(a.exact for a in axes) and len({a.jump for a in axes}) == 1
            return Axis(size=high - low + 1, jump=max(a.jump for a in axes), start=(low + high) / 2, exact=exact)

        return ReceptiveField(merge([f.height for f in fields]), merge([f.width for f in fields]))


def explain_resampling(label: str, before: Axis, after: Axis, factor: str, fmt: Callable[[float], str]) -> str:
    """``RF_H: jump = 2*1/2 = 1, size = 3 + 1.5*2 = 6, start = 0 - 0.25*2 = -0.5 (envelope)``: the
    growth of size and start in units of the input jump, as ``through_resampling`` found them."""
    grow = (after.size - before.size) / before.jump
    shift = (after.start - before.start) / before.jump
    sign = "-" if shift < 0 else "+"
    kind = "exact: every unit alike" if after.exact else "envelope: the units differ by phase"
    return (f"RF_{label}: jump = {fmt(before.jump)}*{factor} = {fmt(after.jump)}, size = {fmt(before.size)} + "
            f"{fmt(grow)}*{fmt(before.jump)} = {fmt(after.size)}, start = {fmt(before.start)} {sign} "
            f"{fmt(abs(shift))}*{fmt(before.jump)} = {fmt(after.start)} ({kind})")
