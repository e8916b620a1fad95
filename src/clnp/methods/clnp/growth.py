"""CLNP's growth policy: add free units before a task that would not fit, and refuse a full layer.

With ``grow``, a layer gets as many free units as the coming task is expected to keep (the most that any
of the last :data:`GROW_LOOKBACK` tasks kept there, at least ``grow_min``), up to ``max_growth`` times its
initial width; a layer with no free unit left is a :class:`~clnp.engine.learner.CapacityError`.
"""

from __future__ import annotations

from typing import Any

from ...engine.learner import CapacityError

GROW_LOOKBACK = 2
"""With ``grow``: the coming task is expected to keep as many units as the most of the last this many tasks."""



class GrowthMixin:
    """The growth policy of :class:`~clnp.methods.clnp.CLNP`."""

    net: Any
    config: Any
    reports: list
    initial_widths: list[int]

    def _expected_need(self) -> list[int]:
        """Per layer, the units the coming task is expected to keep: the most of the last tasks', at least
        ``grow_min``."""
        recent = self.reports[-GROW_LOOKBACK:]
        return [max([self.config.grow_min, *(r.owned[i] for r in recent)]) for i in range(self.net.n_layers)]

    def _grow(self) -> list[int]:
        """Add free units where fewer are left than the coming task is expected to need (within the cap)."""
        grown = []
        for i, (need, free) in enumerate(zip(self._expected_need(), self.net.free_units(), strict=True)):
            cap = int(self.config.max_growth * self.initial_widths[i])
            k = min(need - free, cap - self.net.widths[i])
            if k > 0:
                self.net.grow_(i, k)
            grown.append(max(0, k))
        return grown

    def _check_capacity(self) -> None:
        for i, (name, free) in enumerate(zip(self.net.layer_names, self.net.free_units(), strict=True)):
            if free == 0:
                recent = self.reports[-GROW_LOOKBACK:]
                needed = ", ".join(str(r.owned[i]) for r in recent)
                growth = (f" It has grown to {self.net.widths[i]} units, the cap of max_growth="
                          f"{self.config.max_growth:g} times its initial {self.initial_widths[i]}."
                          if self.config.grow else "")
                raise CapacityError(
                    f"layer {name} has no free unit left for task {self.net.n_tasks}: every unit belongs "
                    f"to an earlier task (the last tasks kept {needed} units there).{growth} Use a wider layer, "
                    "growth (--grow, CLNPConfig(grow=True)), or a larger margin (or a stronger L1 penalty) "
                    "so that each task keeps fewer units."
                )
