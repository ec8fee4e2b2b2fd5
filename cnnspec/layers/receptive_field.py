"""The receptive-field algebra (Araujo et al., "Computing receptive fields of CNNs", Distill 2019).

Per axis a field is (size, jump, start); a window maps it with ``through_window``, merges take the
union. Pure arithmetic, no layer knowledge.
"""


from dataclasses import dataclass


@dataclass(frozen=True)
class Axis:
    """Receptive field along one axis (Araujo et al.): size, jump (stride in input pixels) and
    start (centre of output unit 0, in input pixel coordinates)."""

    size: float
    jump: float
    start: float

    def through_window(self, kernel: int, stride: float, pad_begin: float, dilation: int = 1) -> "Axis":
        """``size += (k'-1)*jump; start += ((k'-1)/2 - p)*jump; jump *= s`` with ``k' = d(k-1)+1``."""
        effective = dilation * (kernel - 1) + 1
        return Axis(
            size=self.size + (effective - 1) * self.jump,
            jump=self.jump * stride,
            start=self.start + ((effective - 1) / 2 - pad_begin) * self.jump,
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

    def to_dict(self) -> dict[str, list[float]]:
        def num(x: float) -> float | int:
            return int(x) if float(x).is_integer() else x

        axes = (self.height, self.width)
        return {
            "size": [num(a.size) for a in axes],
            "jump": [num(a.jump) for a in axes],
            "start": [num(a.start) for a in axes],
        }

    @staticmethod
    def union(fields: "list[ReceptiveField]") -> "ReceptiveField":
        """Where paths merge the field is the union of the input fields (jumps agree for any
        well-formed merge; the largest is kept otherwise)."""

        def merge(axes: list[Axis]) -> Axis:
            low = min(a.low for a in axes)
            high = max(a.high for a in axes)
            return Axis(size=high - low + 1, jump=max(a.jump for a in axes), start=(low + high) / 2)

        return ReceptiveField(merge([f.height for f in fields]), merge([f.width for f in fields]))
