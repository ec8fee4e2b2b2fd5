"""The receptive-field algebra (Araujo et al., "Computing receptive fields of CNNs", Distill 2019).

Per axis a field is (size, jump, start); a window maps it with ``through_window``, merges take the
union, and a layer that resamples (a transposed conv, upsampling) maps it with
``through_resampling``. Pure arithmetic, no layer knowledge. Jumps below one pixel (after
upsampling) are exact fractions (``fractions.Fraction``), so that 1/3 times 3 is 1 again.

After a resampling layer with stride or scale s > 1 the output units differ by phase (even and odd
outputs of a stride-2 transposed conv read different taps). The axis then keeps, per phase
u mod P, the pixels unit u sees as offsets from ``start + u*jump`` (``phases``), and every later
window and union is computed per phase, so fields stay exact unit by unit. ``size`` and ``start``
report their envelope: the smallest interval moving by ``jump`` per unit that holds every unit's
field; each of its edges is reached by some unit. ``exact`` is false then.
"""


import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

#: the pixels a unit sees, (first, last), as offsets from start + u*jump; None: none (a bias only)
Span = tuple[Fraction, Fraction] | None


def plain(number: float) -> float | int:
    """A field number as JSON takes it: an int when whole, else a float (Fractions included)."""
    return int(number) if float(number).is_integer() and number == int(number) else float(number)


@dataclass(frozen=True)
class Axis:
    """Receptive field along one axis (Araujo et al.): size, jump (stride in input pixels) and
    start (centre of output unit 0, in input pixel coordinates). ``phases``: per phase u mod P, the
    field of unit u as offsets from ``start + u*jump`` when units differ (None: all alike).
    ``envelope``: size and start bound units that differ in a way not tracked (a merge of
    unequal jumps)."""

    size: float
    jump: float
    start: float
    phases: tuple[Span, ...] | None = None
    envelope: bool = False

    @property
    def exact(self) -> bool:
        """Every unit has the field (size, start + u*jump)."""
        return not self.envelope and self.phases is None

    def span(self, unit: int) -> tuple[float, float] | None:
        """The pixels unit ``unit`` sees, (first, last), unclipped by the image's borders."""
        centre = self.start + unit * self.jump
        if self.phases is None:
            return centre - (self.size - 1) / 2, centre + (self.size - 1) / 2
        offsets = self.phases[unit % len(self.phases)]
        return None if offsets is None else (centre + offsets[0], centre + offsets[1])

    def through_window(self, kernel: int, stride: float, pad_begin: float, dilation: int = 1) -> "Axis":
        """``size += (k'-1)*jump; start += ((k'-1)/2 - p)*jump; jump *= s`` with ``k' = d(k-1)+1``
        (phase by phase when the units differ)."""
        if self.phases is not None:
            return self.through_resampling(
                Fraction(stride), lambda u: [u * stride - pad_begin + t * dilation for t in range(kernel)], 1)
        effective = dilation * (kernel - 1) + 1
        half = Fraction(effective - 1, 2) if isinstance(self.jump, Fraction) else (effective - 1) / 2
        return Axis(
            size=self.size + (effective - 1) * self.jump,
            jump=self.jump * stride,
            start=self.start + (half - pad_begin) * self.jump,
            envelope=self.envelope,
        )

    def through_resampling(self, ratio: Fraction, reads: Callable[[int], list[int]], period: int) -> "Axis":
        """A layer whose output unit u reads the input units ``reads(u)`` (none: only a bias), with
        ``reads(u + period) = reads(u) + period*ratio``: ``ratio`` input units per output unit (1/s
        for a stride-s transposed conv or upsampling, s for a stride-s window).

        Unit u sees from the first pixel of the first unit it reads to the last pixel of the last
        one; computed for one period of output units (longer if the input's phases need it), with
        ``jump *= ratio``. For a window over alike units this is ``through_window``."""
        jump = self.jump if isinstance(self.jump, Fraction) else Fraction(self.jump)
        new_jump = jump * ratio
        inputs = len(self.phases) if self.phases is not None else 1
        units = period * (inputs // math.gcd(inputs, int(ratio * period)))
        spans: list[Span] = []
        for unit in range(units):
            ends = [end for end in (self.span(index) for index in reads(unit)) if end is not None]
            offset = unit * new_jump
            spans.append((Fraction(min(e[0] for e in ends)) - offset, Fraction(max(e[1] for e in ends)) - offset)
                         if ends else None)
        return _from_spans(new_jump, spans, self.envelope)

    @property
    def low(self) -> float:
        return self.start - (self.size - 1) / 2

    @property
    def high(self) -> float:
        return self.start + (self.size - 1) / 2


def _from_spans(jump: float, spans: Sequence[Span], envelope: bool = False) -> Axis:
    """An axis from the fields of one period of units, each as offsets from unit*jump."""
    present = [span for span in spans if span is not None]
    if not present:  # no unit sees a pixel (a transposed conv's empty phases, then a stride over them)
        return Axis(size=0, jump=jump, start=0, phases=tuple(spans), envelope=envelope)
    left, right = min(low for low, _ in present), max(high for _, high in present)
    start = (left + right) / 2
    phases = tuple(None if span is None else (span[0] - start, span[1] - start) for span in spans)
    return Axis(size=right - left + 1, jump=jump, start=start,
                phases=None if len(set(phases)) == 1 else phases, envelope=envelope)


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
        """Where paths merge the field is the union of the input fields, unit by unit (jumps agree
        for any well-formed merge; otherwise the largest is kept and the result is an envelope)."""

        def merge(axes: list[Axis]) -> Axis:
            if len({a.jump for a in axes}) == 1 and any(a.phases is not None for a in axes):
                units = math.lcm(*(len(a.phases or (0,)) for a in axes))
                spans = []
                for unit in range(units):
                    ends = [end for end in (a.span(unit) for a in axes) if end is not None]
                    offset = unit * axes[0].jump
                    spans.append((min(e[0] for e in ends) - offset, max(e[1] for e in ends) - offset) if ends else None)
                return _from_spans(axes[0].jump, spans, any(a.envelope for a in axes))
            low = min(a.low for a in axes)
            high = max(a.high for a in axes)
            envelope = any(not a.exact for a in axes) or len({a.jump for a in axes}) > 1
            return Axis(size=high - low + 1, jump=max(a.jump for a in axes), start=(low + high) / 2, envelope=envelope)

        return ReceptiveField(merge([f.height for f in fields]), merge([f.width for f in fields]))


def explain_resampling(label: str, before: Axis, after: Axis, factor: str, fmt: Callable[[float], str]) -> str:
    """``RF_H: jump = 2*1/2 = 1, size = 3 + 1.5*2 = 6, start = 0 - 0.25*2 = -0.5 (envelope)``: the
    growth of size and start in units of the input jump, as ``through_resampling`` found them."""
    grow = (after.size - before.size) / before.jump
    shift = (after.start - before.start) / before.jump
    sign = "-" if shift < 0 else "+"
    kind = "exact: every unit alike" if after.exact else f"envelope of {len(after.phases or ())} phases that differ"
    return (f"RF_{label}: jump = {fmt(before.jump)}*{factor} = {fmt(after.jump)}, size = {fmt(before.size)} + "
            f"{fmt(grow)}*{fmt(before.jump)} = {fmt(after.size)}, start = {fmt(before.start)} {sign} "
            f"{fmt(abs(shift))}*{fmt(before.jump)} = {fmt(after.start)} ({kind})")
