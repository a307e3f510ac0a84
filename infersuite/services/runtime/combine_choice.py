"""Whether combining requests saves CPU on one model, measured on the model's own traffic.

Combining concurrent requests into one execution amortises the per-run overhead, but ragged
inputs are padded to the longest request of the group, and the combine/split copies cost CPU too.
On a mix of short and long histories (DIN ranking) the padding costs more than the overhead saved,
so combining makes every request dearer; on small requests of one size it halves their cost. No
fixed setting is right for both, so the batcher measures.

Two estimates of CPU seconds per useful cell (rows x the ragged sizes the requests asked for), one
while combining and one while running one request per execution. An execution's cost is the
process's CPU since the previous execution ended: the model's run and everything that served its
requests (gRPC, decoding, the scheduler's tasks and hand-offs, combine and split copies); padding
counts as waste because it is not a useful cell. Until each estimate has `min_samples` executions
the choice is Triton's (combine). Then combining stays on only while its estimate is below the
single one. The last `probe_length` executions of every `probe_every` take the other choice, so both
estimates exist under any load and the road not taken follows a change of traffic mix. Other models
served by the same process add the same noise to both estimates.
"""

from __future__ import annotations


class CombineChoice:
    def __init__(self, *, min_samples: int = 32, probe_every: int = 512, probe_length: int = 32,
                 weight: float = 0.05) -> None:
        if not 0 < probe_length < probe_every:
            raise ValueError("probe_length must be positive and shorter than probe_every")
        self.min_samples, self.probe_every, self.probe_length, self.weight = (
            min_samples, probe_every, probe_length, weight)
        # combined? -> decayed sums of CPU seconds and of useful cells: their ratio is the estimate (a ratio
        # of sums, not a mean of per-execution ratios, which small executions would dominate).
        self._cpu: dict[bool, float] = {False: 0.0, True: 0.0}
        self._cells: dict[bool, float] = {False: 0.0, True: 0.0}
        self._samples = {False: 0, True: 0}
        self._executions = 0
        self._saves: bool | None = None  # None: not measured yet

    @property
    def saves_cpu(self) -> bool | None:
        """The measured verdict (None until both estimates have enough executions)."""
        return self._saves

    def estimate(self, combined: bool) -> float | None:
        """CPU seconds per useful cell while running one request per execution (False) or combining (True)."""
        cells = self._cells[combined]
        return self._cpu[combined] / cells if cells > 0 else None

    def combine(self) -> bool:
        """Whether the next execution may take several requests."""
        choice = True if self._saves is None else self._saves
        probing = self._executions % self.probe_every >= self.probe_every - self.probe_length
        return choice != probing

    def record(self, cells: int, cpu_s: float) -> None:
        """One execution, under the current choice, holding `cells` useful cells, which cost `cpu_s`."""
        if cells < 1 or cpu_s < 0:
            return
        combined = self.combine()
        self._samples[combined] += 1
        keep = 1.0 - self.weight  # older executions count less, so a change of traffic shows
        self._cpu[combined] = keep * self._cpu[combined] + cpu_s
        self._cells[combined] = keep * self._cells[combined] + cells
        self._executions += 1
        if min(self._samples.values()) >= self.min_samples:
            self._saves = self._cpu[True] / self._cells[True] < self._cpu[False] / self._cells[False]
