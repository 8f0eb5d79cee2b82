"""Test-time views spread over a followed face's frames: one view a frame instead of all of them.

A mode of V views (fer_core.tta; the shipped ``zoom-flip`` has V = 2) costs V passes through the
members for every face. A webcam's face is the same face in the stream's next frame (fer_core.track
follows it under one id), so each frame can compute one view and average it with the other views,
computed at the stream's last V - 1 frames:

    p_f = (1 / V) * sum_j P_j(x_{f_j})

where P_j(x) is the members' probabilities (M, C) for view j of the crop x, and f_j <= f is the
latest frame at which view j was computed (f_j = f for the view computed now). On a still face
(x_f = x at every f) p_f is exactly the mode's average over its V views of x, so the accuracy is
the mode's (tests/test_spread.py; bench/bench_spread.py measures it on moved crops too). A new
expression shows half-weighted (V = 2) at its first frame and fully at the next: one frame of lag,
200 ms at the page's 5 frames a second (the page smooths its bars over 6 frames anyway).

A view's result is reused only while it is recent: computed at one of the stream's last V - 1
frames and at most ``max_age`` seconds ago. A face without recent views (new, lost and found again,
or after a pause) gets every view in this frame; under load (``at_most_one``, the server's full batch)
it gets the first one only, and its answer averages the views it has: ``n`` in ``record``'s result.
The views belong to a followed face (kept by its tracker, ``FaceTracker.kept_for``), so a new person who takes a departed
one's place (their boxes overlapping enough for the tracker to keep the id) gets one frame of the
other's view in their first answer, as a changed expression does. Pure numpy; the frames are
numbered by the caller (``FaceTracker.frames``).
"""
from __future__ import annotations

import numpy as np

# Two views computed this far apart are no longer one moment of the face: at 5 frames a second a
# view is 0.2 s old, and a class of 60 on two cores still gets a frame a second or so.
MAX_AGE_S = 2.0


class FaceViews:
    """The recent view results of one followed face: ``plan`` which views to compute at a frame,
    then ``record`` what they gave and get the face's answer."""

    def __init__(self, n_views: int, max_age: float = MAX_AGE_S):
        if type(n_views) is not int or n_views < 1:
            raise ValueError(f"n_views must be an int >= 1, got {n_views!r}")
        if not max_age > 0:
            raise ValueError(f"max_age must be > 0, got {max_age!r}")
        self.n, self.max_age = n_views, max_age
        self._last: dict[int, tuple[int, float, np.ndarray]] = {}  # view -> (frame, time, probabilities)

    def _recent(self, frame: int, now: float) -> list[int]:
        return [j for j, (f, t, _) in self._last.items()
                if frame - (self.n - 1) <= f <= frame and now - t <= self.max_age]

    def plan(self, frame: int, now: float, at_most_one: bool = False) -> list[int]:
        """The views to compute at ``frame``: those without a recent result, first to last, or (all
        recent) the one computed longest ago, so that every answer holds this frame. ``at_most_one``:
        the first of them only."""
        recent = set(self._recent(frame, now))
        todo = [j for j in range(self.n) if j not in recent]
        if not todo:
            todo = [min(range(self.n), key=lambda j: (self._last[j][0], j))]
        return todo[:1] if at_most_one else todo

    def record(self, frame: int, now: float, computed: dict) -> tuple[np.ndarray, int, bool]:
        """Keep ``computed`` ({view: probabilities}, this frame's) and return the face's answer:
        (the mean of its recent views' probabilities, how many views that is, whether some of them
        came from an earlier frame)."""
        if not computed:
            raise ValueError("record needs at least one view computed at this frame, got none")
        for j, p in computed.items():
            if not 0 <= j < self.n:
                raise ValueError(f"view must be in 0..{self.n - 1}, got {j!r}")
            self._last[j] = (frame, now, np.array(p))  # a copy: not a view into the batch's outputs
        used = sorted(self._recent(frame, now))
        return (np.mean([self._last[j][2] for j in used], axis=0), len(used),
                any(self._last[j][0] < frame for j in used))
